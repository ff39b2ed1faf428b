"""The operator's console: HTML pages served by the live app, every asset shipped in this package.

``/`` redirects to ``/dashboard``. Pages: ``/dashboard`` (fleet), ``/dashboard/cell?device_id=&cell_number=``,
``/dashboard/alerts``, ``/dashboard/models``. Their JavaScript and CSS are files under ``static/``
(served at ``/dashboard/static``); plotly.js is the bundle of the installed ``plotly`` package
(served at ``/dashboard/vendor/plotly.min.js``). Nothing is loaded from another host: every page
carries a Content-Security-Policy that only allows this service.

The pages are shells without data, so they need no API key; the data comes from the ``/v1`` routes,
which do. The browser keeps the key the operator types in ``sessionStorage`` (this tab only) and
sends it as ``X-API-Key`` (and as ``?token=`` to ``WS /v1/stream``, where a browser cannot set a header).

Two small read-only routes answer what the pages need in one call: ``GET /v1/fleet/cells``
(:func:`bms_live.console.fleet_cells`) and ``GET /v1/models/versions``
(:func:`bms_live.console.model_versions`).
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGES = HERE / "pages"
#: Everything from this service only; plotly.js sets inline styles (style-src 'unsafe-inline').
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
NAV = (
    ("fleet", "/dashboard", "Fleet"),
    ("alerts", "/dashboard/alerts", "Alerts"),
    ("models", "/dashboard/models", "Models"),
)
TITLES = {"fleet": "Fleet overview", "cell": "Cell", "alerts": "Alerts", "models": "Models"}


class FleetCells(BaseModel):
    cells: list[dict[str, Any]] = Field(description="every cell, dead and at-risk first")
    devices: list[dict[str, Any]] = Field(description="per string: cells, status counts, open alerts")
    metrics: dict[str, Any] = Field(description="peer-deviation measurements and whether any cell has them")
    status_order: list[str]
    as_of: str | None = Field(description="newest reading of the fleet")


class ModelVersions(BaseModel):
    models: list[dict[str, Any]] = Field(description="per model: versions, aliases, promotion decisions")


@lru_cache(maxsize=1)
def plotly_js() -> Path:
    """The plotly.js bundle shipped with the installed ``plotly`` package (never downloaded)."""
    import plotly

    bundled = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if bundled.is_file():
        return bundled
    import tempfile

    from bms_schema.offline import plotly_js_beside  # writes the bundle from plotly.offline once

    return plotly_js_beside(Path(tempfile.gettempdir()) / "bms-flux-console")


@lru_cache(maxsize=8)
def render(page: str) -> str:
    """The page's HTML: the shared layout around ``pages/<page>.html``."""
    layout = (PAGES / "layout.html").read_text(encoding="utf-8")
    body = (PAGES / f"{page}.html").read_text(encoding="utf-8")
    current = ' aria-current="page"'
    nav = "\n".join(
        f'<li><a href="{href}"{current if key == page else ""}>{html.escape(label)}</a></li>'
        for key, href, label in NAV
    )
    scripts = ['<script src="/dashboard/vendor/plotly.min.js" defer></script>'] if page in ("fleet", "cell") else []
    scripts.append(f'<script src="/dashboard/static/{page}.js" defer></script>')
    return (
        layout.replace("{{title}}", html.escape(TITLES[page]))
        .replace("{{page}}", page)
        .replace("{{nav}}", nav)
        .replace("{{body}}", body)
        .replace("{{scripts}}", "\n".join(scripts))
    )


def _page(page: str) -> HTMLResponse:
    return HTMLResponse(render(page), headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def install(app: FastAPI, service: Any, secured: list[Any], errors: dict[int | str, dict[str, Any]]) -> None:
    """Add the pages, their assets and the two read-only routes to ``app``."""
    app.include_router(pages(), include_in_schema=False)
    app.include_router(_data_router(service, secured, errors))
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")


def _data_router(service: Any, secured: list[Any], errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    from .. import console, stored

    router = APIRouter(dependencies=secured, responses=errors)

    @router.get(
        "/v1/fleet/cells",
        tags=["store"],
        response_model=FleetCells,
        summary="Every cell: deviation from its string's peers, stored risk, open alerts; dead and at-risk first",
    )
    def fleet_cells() -> dict[str, Any]:
        return console.fleet_cells(stored.require_store(service))

    @router.get(
        "/v1/models/versions",
        tags=["status"],
        response_model=ModelVersions,
        summary="Every registered model version with metrics and aliases (champion, challenger), and decisions",
    )
    def model_versions() -> dict[str, Any]:
        return console.model_versions(service.registry)

    return router


def pages() -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=RedirectResponse)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=307)

    @router.get("/dashboard", response_class=HTMLResponse)
    def fleet() -> HTMLResponse:
        return _page("fleet")

    @router.get("/dashboard/cell", response_class=HTMLResponse)
    def cell() -> HTMLResponse:
        return _page("cell")

    @router.get("/dashboard/alerts", response_class=HTMLResponse)
    def alerts() -> HTMLResponse:
        return _page("alerts")

    @router.get("/dashboard/models", response_class=HTMLResponse)
    def models() -> HTMLResponse:
        return _page("models")

    @router.get("/dashboard/vendor/plotly.min.js")
    def plotly_bundle() -> Response:
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    return router


__all__ = ["install", "render", "plotly_js", "CSP"]
