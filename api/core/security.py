"""Password hashing (argon2), JWTs, and hashes of high-entropy secrets (API keys, tokens)."""

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.core import clock

_hasher = PasswordHasher()
JWT_ALGORITHM = "HS256"
# A fixed hash to verify against when the account does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """SHA-256 of a random secret; enough for tokens with ≥128 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_digest(secret_key: str, value: str) -> str:
    """HMAC for low-entropy secrets (one-time codes) so a leaked table cannot be brute-forced."""
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def encode_jwt(secret_key: str, claims: dict[str, Any], lifetime: timedelta) -> str:
    issued = clock.now()
    payload = {
        **claims,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(payload, secret_key, algorithm=JWT_ALGORITHM)


def decode_jwt(secret_key: str, token: str, *, kind: str) -> dict[str, Any] | None:
    """Claims of a valid, unexpired token of `kind`, else None."""
    claims = verified_claims(secret_key, token)
    if claims is None or claims.get("typ") != kind or is_expired(claims):
        return None
    return claims


def verified_claims(secret_key: str, token: str) -> dict[str, Any] | None:
    """The claims of a token signed with our key, expired or not; None for anything forged."""
    try:
        return jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            # exp is checked against clock.now() by the caller; PyJWT would use the wall clock.
            options={"verify_exp": False, "verify_iat": False, "require": ["exp", "sub", "typ"]},
        )
    except jwt.PyJWTError:
        return None


def is_expired(claims: dict[str, Any]) -> bool:
    return bool(claims["exp"] < clock.now().timestamp())


def expired_kind(secret_key: str, token: str) -> str | None:
    """The `typ` of a token we signed that has expired (so the caller should refresh)."""
    claims = verified_claims(secret_key, token)
    return str(claims.get("typ")) if claims is not None and is_expired(claims) else None


def successor_token(secret_key: str, token: str, prefix: str = "") -> str:
    """The token that replaces `token` when it is rotated, derived with a keyed hash.

    Only someone holding `token` itself (and the server, holding the key) can compute it, so
    a second, simultaneous use of `token` can be answered with the same successor while only
    hashes are stored. 256 bits, like new_token.
    """
    mac = hmac.new(secret_key.encode(), f"successor:{token}".encode(), hashlib.sha256).digest()
    return prefix + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
