"""Who may call a route. Each auth dependency declares the callers it admits; a route admits
what all of its dependencies admit together, and a route that declares nothing cannot be built.
The policy is published in the OpenAPI as `x-access`."""

from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import Message

PUBLIC = "public"
MEMBER = "member"
TERMINAL = "terminal"
_ATTR = "__access_policy__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Policy:
    """The callers a route admits: `public`, or principals such as `member`, `terminal`,
    `staff:admin`."""

    principals: frozenset[str]

    @classmethod
    def of(cls, *principals: str) -> "Policy":
        """A policy admitting exactly these principals."""
        return cls(frozenset(principals))

    @classmethod
    def staff(cls, *roles: str) -> "Policy":
        """Signed-in staff holding one of `roles`."""
        return cls(frozenset(f"staff:{role}" for role in roles))

    @property
    def is_public(self) -> bool:
        return PUBLIC in self.principals

    @property
    def staff_roles(self) -> frozenset[str]:
        return frozenset(
            p.removeprefix("staff:") for p in self.principals if p.startswith("staff:")
        )

    def admits(self, principal: str) -> bool:
        """Whether `principal` gets past the route's checks (a public route admits anyone)."""
        return self.is_public or principal in self.principals

    def __and__(self, other: "Policy") -> "Policy":
        return Policy(self.principals & other.principals)

    def __or__(self, other: "Policy") -> "Policy":
        return Policy(self.principals | other.principals)

    def describe(self) -> list[str]:
        """The policy as published in the OpenAPI (`x-access`)."""
        return sorted(self.principals)


class PolicyError(Exception):
    """A route whose access policy is missing or contradicts itself."""


def declare(policy: Policy) -> Callable[[F], F]:
    """Mark a dependency as admitting only `policy`'s callers."""

    def mark(dependency: F) -> F:
        setattr(dependency, _ATTR, policy)
        return dependency

    return mark


def declared(dependency: Any) -> Policy | None:
    """The policy a dependency declared, if any."""
    return getattr(dependency, _ATTR, None)


@declare(Policy.of(PUBLIC))
async def public() -> None:
    """Marks a route that anyone may call."""


Public = Depends(public)


def _declarations(dependant: Dependant) -> Iterator[tuple[str, Policy]]:
    for sub in dependant.dependencies:
        policy = declared(sub.call)
        if policy is not None:
            yield getattr(sub.call, "__qualname__", repr(sub.call)), policy
        yield from _declarations(sub)


def policy_of(dependant: Dependant, where: str = "") -> Policy:
    """The callers a route admits: what every policy in its dependency tree admits together."""
    found = list(_declarations(dependant))
    if not found:
        raise PolicyError(f"{where}: no access policy (use an auth dependency or Public)")
    names = ", ".join(sorted({name for name, _ in found}))
    publics = [p for _, p in found if p.is_public]
    if publics and len(publics) != len(found):
        raise PolicyError(f"{where}: declared public but also requires a caller ({names})")
    policy = found[0][1]
    for _, more in found[1:]:
        policy &= more
    if not policy.principals:
        raise PolicyError(f"{where}: no caller can satisfy every dependency ({names})")
    return policy


def _json_syntax_error(exc: RequestValidationError) -> bool:
    return any(e.get("type") == "json_invalid" for e in exc.errors())


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class PolicyRoute(APIRoute):
    """An APIRoute that cannot be built without an access policy, publishes it as `x-access`,
    and answers 401/403 before a malformed JSON body's 422."""

    access: Policy

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.openapi_extra = {**(self.openapi_extra or {}), "x-access": self.access.describe()}

    def get_route_handler(self) -> Callable[[Request], Any]:
        # APIRoute.__init__ asks for the handler once the dependant is built: the earliest
        # point where the policy can be read, so a route without one fails at import.
        self.access = policy_of(self.dependant, f"{sorted(self.methods)} {self.path}")
        handler = super().get_route_handler()
        if (
            self.access.is_public
            or self.body_field is None
            or not self.body_field.field_info.is_required()
        ):
            return handler

        async def credentials_first(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if not _json_syntax_error(exc):
                    raise
                # FastAPI parses JSON before it runs dependencies. Run them on an empty body:
                # a refused caller gets 401/403; an admitted one stops at the missing body.
                with suppress(RequestValidationError):
                    await handler(Request(request.scope, _no_body))
                raise exc from None

        return credentials_first


class PolicyRouter(APIRouter):
    """The API's router: every route it builds is a `PolicyRoute`, so none exists without a
    declared access policy."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", PolicyRoute)
        super().__init__(**kwargs)
