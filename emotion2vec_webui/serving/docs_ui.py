"""``/docs``: FastAPI's Swagger UI page, with Swagger UI's script and style served by the app itself.

FastAPI's default ``/docs`` loads ``swagger-ui-dist`` and its favicon from
remote hosts, so on a machine without internet the page stays blank. Here Swagger UI 5 (npm
``swagger-ui-dist``, Apache-2.0; version 5 because FastAPI writes OpenAPI
3.1, which Swagger UI 4 — the one in the ``swagger-ui-bundle`` pip package —
cannot read) is vendored in ``serving/static/swagger-ui/`` with its licence,
mounted at :data:`STATIC_URL` by the composition root, and the page built by
FastAPI's own :func:`get_swagger_ui_html` points at it. The validator badge
is off (it would call a remote validator).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
STATIC_URL = "/e2v-static/swagger-ui"  # where app.py mounts SWAGGER_DIR

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page for ``/openapi.json``; every URL in it is served by this app."""
    root = request.scope.get("root_path", "").rstrip("/")
    static = f"{root}{STATIC_URL}"
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} — API docs",
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


def mount_static(app) -> None:
    """Serve the vendored Swagger UI files at :data:`STATIC_URL` (call before the UI is mounted at ``/``)."""
    from starlette.staticfiles import StaticFiles

    app.mount(STATIC_URL, StaticFiles(directory=SWAGGER_DIR), name="swagger-ui-static")
