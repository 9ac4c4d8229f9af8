"""/docs works on a box without internet: Swagger UI's assets come from the platform itself."""

from __future__ import annotations

import re

from tests.api.conftest import Api


def test_docs_page_references_no_external_host_and_its_assets_answer(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [url for url in urls if "//" in url], urls  # no http(s)://host nor //host
    assets = [url for url in urls if not url.endswith(".json")]
    assert len(assets) >= 2
    for url in assets:
        assert api.client.get(url).status_code == 200, url
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN
