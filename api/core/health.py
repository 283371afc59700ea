from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.core.access import PolicyRouter, Public

router = PolicyRouter(tags=["operations"])


@router.get("/healthz", dependencies=[Public])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[Public])
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the process answers and the database accepts a query."""
    try:
        async with request.app.state.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_begin="DEFERRED")
            await conn.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
