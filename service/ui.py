"""The dashboard: ``/ui``, a page of runs and jobs served by the job server itself.

The page is plain HTML, CSS and JavaScript shipped in the package (``service/static``): no
build step, no CDN. It reads the same ``/v1`` API as any client, with the API key the user
enters once per browser session (kept in ``sessionStorage``, sent as ``X-API-Key``), so it sees
exactly what that key's tenant sees: another tenant's run or job is a 404 page. It polls the
API every couple of seconds, so states, counts and the loss curve update without reloading.

Routes (none in the OpenAPI schema):

- ``GET /ui``, ``GET /ui/runs/{run_id}``, ``GET /ui/jobs/{job_id}``: the page (the script
  reads the path and draws the overview, a run or a job);
- ``GET /ui/static/...``: its script and style sheet.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_ui"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The dashboard's files (package data of ``qldm.service``)."""

_NO_STORE = {"Cache-Control": "no-store"}


@cache
def _page() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


async def _ui_page(path: str = "") -> HTMLResponse:
    """The dashboard's page, whatever the path below ``/ui`` (the script routes)."""
    return HTMLResponse(_page(), headers=_NO_STORE)


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui`` on ``app``."""
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_api_route("/ui", _ui_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/{path:path}", _ui_page, methods=["GET"], include_in_schema=False)
