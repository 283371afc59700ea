from api.core.errors import Conflict, InvalidInput, NotFound, TooManyRequests, Unauthorized


class RegionNotFound(NotFound):
    """No such region."""


class StoreNotFound(NotFound):
    """No such store."""


class TerminalNotFound(NotFound):
    """No such terminal."""


class StaffNotFound(NotFound):
    """No such staff member."""


class RegionExists(Conflict):
    """A region with this name already exists."""


class StoreCodeTaken(Conflict):
    """A store with this code already exists."""


class StaffExists(Conflict):
    """A staff member with this e-mail already exists."""


class InvalidScope(InvalidInput):
    """The role's scope does not fit: region managers need region_id, store staff store_id."""


class BadCredentials(Unauthorized):
    """Incorrect e-mail or password."""


class InvalidApiKey(Unauthorized):
    """Missing, unknown or revoked terminal API key."""

    headers = {"WWW-Authenticate": "ApiKey"}


class SignInLocked(TooManyRequests):
    """Too many failed sign-ins; wait before trying again."""


class StaffSelfChange(Conflict):
    """You cannot deactivate your own account or take away your own admin role."""
