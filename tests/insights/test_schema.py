"""The insights migration (revision 0002) creates exactly what the models declare."""

from api.core import migrate
from tests.conftest import DATABASE_URL


async def test_insights_tables_match_the_models(engine):
    differences = await migrate.model_differences(DATABASE_URL)
    ours = [d for d in differences if "insights_" in repr(d)]
    assert ours == []
