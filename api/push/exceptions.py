from api.core.errors import Conflict, InvalidInput, NotFound


class DeviceNotFound(NotFound):
    """No such device token is registered to you."""


class InboxItemNotFound(NotFound):
    """No such message in your inbox."""


class CampaignNotFound(NotFound):
    """No such campaign."""


class CampaignNotEditable(Conflict):
    """A scheduled or running campaign cannot change what it sends; pause it first."""


class InvalidTransition(Conflict):
    """The campaign cannot move to that state from its current one."""


class InvalidCampaign(InvalidInput):
    """The campaign's schedule, audience, message or reward is not valid."""


class TestRecipientNotFound(NotFound):
    """No such member to send the test to."""
