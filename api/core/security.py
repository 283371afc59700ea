"""Password hashing (argon2), JWTs, and hashes of high-entropy secrets (API keys, tokens)."""

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
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            # exp is checked below against clock.now(); PyJWT would judge iat by the wall clock.
            options={"verify_exp": False, "verify_iat": False, "require": ["exp", "sub", "typ"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != kind or claims["exp"] < clock.now().timestamp():
        return None
    return claims
