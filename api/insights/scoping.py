"""Scope filters: managers see members whose home store is in their scope, sales of their stores."""

from typing import Any

from sqlalchemy import true

from api.org import service as org_service
from api.org.scope import Scope


def in_scope(store_column: Any, scope: Scope) -> Any:
    """`store_column IN (stores of the scope)`, or TRUE for admin and marketer."""
    if scope.is_global:
        return true()
    return store_column.in_(org_service.store_ids_in_scope(scope))
