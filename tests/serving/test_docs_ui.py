"""/docs: Swagger UI from the package, every URL in the page served by the app (no CDN)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from emotion2vec_webui.serving import docs_ui


def _client() -> TestClient:
    app = FastAPI(title="emotion2vec-webui", docs_url=None, redoc_url=None)
    app.include_router(docs_ui.router)
    docs_ui.mount_static(app)
    return TestClient(app)


def test_docs_page_references_only_app_served_urls():
    client = _client()
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text) + re.findall(r"url:\s*'([^']+)'", page.text)
    assert {u.rsplit("/", 1)[-1] for u in urls} == {
        "swagger-ui.css",
        "favicon-32x32.png",
        "swagger-ui-bundle.js",
        "openapi.json",
    }
    assert not re.search(r"https?://", page.text)  # no CDN (cdn.jsdelivr.net) and no favicon from fastapi.tiangolo.com
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert '"validatorUrl": null' in page.text  # no call to validator.swagger.io
    assert client.get(f"{docs_ui.STATIC_URL}/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("application/javascript", "text/javascript")
    )


def test_vendored_swagger_ui_ships_its_licence():
    assert (docs_ui.SWAGGER_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert docs_ui.SWAGGER_UI_VERSION in (docs_ui.SWAGGER_DIR / "README.md").read_text()
    assert "sourceMappingURL" not in (docs_ui.SWAGGER_DIR / "swagger-ui-bundle.js").read_text()[-300:]
