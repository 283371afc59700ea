"""Import every domain's models so Base.metadata knows all tables (Alembic, tests)."""

from api.core import models as core_models
from api.insights import models as insights_models
from api.loyalty.ledger import models as ledger_models
from api.loyalty.program import models as program_models
from api.loyalty.rewards import models as rewards_models
from api.loyalty.till import models as till_models
from api.members import importer as members_import_models
from api.members import models as members_models
from api.org import models as org_models
from api.push import models as push_models

__all__ = [
    "core_models",
    "insights_models",
    "ledger_models",
    "members_import_models",
    "members_models",
    "org_models",
    "program_models",
    "push_models",
    "rewards_models",
    "till_models",
]
