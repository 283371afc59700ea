from api.core.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized


class MemberNotFound(NotFound):
    """No such member."""


class MemberExists(Conflict):
    """A member with this phone number already exists."""


class InvalidPhone(InvalidInput):
    """Not a valid phone number."""


class InvalidPlate(InvalidInput):
    """Not a valid licence plate."""


class PlateTaken(Conflict):
    """This plate is registered to another member."""


class OtpInvalid(Unauthorized):
    """Wrong or expired code."""


class OtpLocked(DomainError):
    """Too many wrong codes; request a new one."""

    status_code = 429


class RefreshInvalid(Unauthorized):
    """Unknown, expired or revoked refresh token."""


class RefreshReused(Unauthorized):
    """This refresh token was already used; every token of this sign-in is now revoked."""


class SmsFailed(DomainError):
    """The SMS gateway did not accept the message."""

    status_code = 502


class CodeNotRecognised(NotFound):
    """No member matches this card, phone, plate or code."""


class CodeForged(InvalidInput):
    """This member card code is not valid."""


class CodeExpired(DomainError):
    """This member card code has expired; ask the member to refresh the card."""

    status_code = 410


class CodeReplayed(Conflict):
    """This member card code was already used; ask the member to show a fresh one."""


class MemberBlocked(DomainError):
    """This member card is blocked."""

    status_code = 403
