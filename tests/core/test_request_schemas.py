"""Every request body refuses fields it does not declare, nested models included."""

import inspect
import typing

import pydantic
from fastapi.routing import APIRoute, iter_route_contexts

from tests.factories import Org


def _body_params(dependant):  # type: ignore[no-untyped-def]
    yield from dependant.body_params
    for sub in dependant.dependencies:
        yield from _body_params(sub)


def _models(annotation: object, seen: dict[type, None]) -> None:
    if typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            _models(arg, seen)
    elif (
        inspect.isclass(annotation)
        and issubclass(annotation, pydantic.BaseModel)
        and annotation not in seen
    ):
        seen[annotation] = None
        for field in annotation.model_fields.values():
            _models(field.annotation, seen)


def request_models(app) -> dict[type, None]:  # type: ignore[no-untyped-def]
    seen: dict[type, None] = {}
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            for param in _body_params(ctx.dependant):
                _models(param.field_info.annotation, seen)
    return seen


def test_every_request_model_forbids_unknown_fields(app):
    models = request_models(app)
    assert len(models) > 30  # the walk found the bodies
    lax = [
        f"{m.__module__}.{m.__name__}" for m in models if m.model_config.get("extra") != "forbid"
    ]
    assert lax == []


async def test_a_typo_in_a_receipt_is_refused_and_named(client, org: Org):
    body = {
        "receipt_no": "R-TYPO-1",
        "currency": "CNY",
        "total": 1000,
        "member_cod": "8860000000000000",
        "lines": [
            {"line_no": 1, "sku": "A", "category": "grocery", "quantity": "1", "amount": 1000}
        ],
    }
    response = await client.post(
        "/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket)
    )
    assert response.status_code == 422, response.text
    assert "member_cod" in response.text
    again = await client.post(
        "/v1/pos/purchases",
        json={k: v for k, v in body.items() if k != "member_cod"},
        headers=org.terminal(org.supermarket),
    )
    assert again.status_code == 201, again.text  # nothing was stored by the refused post


async def test_unknown_nested_field_is_refused(client, org: Org):
    body = {
        "receipt_no": "R-TYPO-2",
        "currency": "CNY",
        "total": 1000,
        "lines": [
            {
                "line_no": 1,
                "sku": "A",
                "category": "grocery",
                "quantity": "1",
                "amount": 1000,
                "fuel_grad": "95#",
            }
        ],
    }
    response = await client.post(
        "/v1/pos/purchases", json=body, headers=org.terminal(org.supermarket)
    )
    assert response.status_code == 422
    assert "fuel_grad" in response.text
