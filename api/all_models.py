"""Import every domain's models so Base.metadata knows all tables (Alembic, tests)."""

from api.core import models as core_models
from api.loyalty import models as loyalty_models
from api.members import models as members_models
from api.org import models as org_models

__all__ = ["core_models", "loyalty_models", "members_models", "org_models"]
