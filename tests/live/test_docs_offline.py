"""``/docs`` and ``/redoc`` work offline: every asset comes from the service itself."""

from __future__ import annotations

import re


def test_docs_and_redoc_reference_only_the_service(make_client) -> None:
    with make_client() as client:
        for page in ("/docs", "/redoc"):
            response = client.get(page)
            assert response.status_code == 200, page
            html = response.text
            urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'" )>]+)""", html)
            assert urls, f"{page} loads no assets?"
            foreign = [u for u in urls if re.match(r"(https?:)?//", u)]
            assert not foreign, f"{page} loads assets from other hosts: {foreign}"
            assert "cdn.jsdelivr.net" not in html and "fonts.googleapis.com" not in html
            for url in urls:  # each asset is served by the app (no 404 offline)
                if url.startswith("/static-offline-docs/"):
                    asset = client.get(url)
                    assert asset.status_code == 200 and len(asset.content) > 1000, url
        swagger = client.get("/docs").text
        assert "/static-offline-docs/swagger-ui-bundle.js" in swagger
        assert "/static-offline-docs/redoc.standalone.js" in client.get("/redoc").text
