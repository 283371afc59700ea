"""The staff console, mounted at /admin. Imports services; nothing imports it."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from api.core.config import Settings


def create_admin_app(settings: Settings) -> FastAPI:
    console = FastAPI(title="Loyalty console", docs_url=None, redoc_url=None, openapi_url=None)

    @console.get("/", response_class=HTMLResponse)
    async def home() -> str:
        """Console landing page."""
        return (
            "<!doctype html><title>Loyalty console</title>"
            "<h1>Loyalty console</h1><p>The console arrives with the console issue. "
            "Meanwhile the API and its documentation are at <a href='/docs'>/docs</a>.</p>"
        )

    return console
