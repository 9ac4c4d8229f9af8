"""What /console/ serves: the console's modules, catalogs, styles and the vendored ECharts with its
licence texts, each with its media type; nothing outside static/, no hidden file, not the page itself."""

from __future__ import annotations

import pytest

from zhisuan.console.assets import console_asset, media_type_of


@pytest.mark.parametrize(("path", "media"), [
    ("console.js", "text/javascript; charset=utf-8"),
    ("pages/fleet.js", "text/javascript; charset=utf-8"),
    ("console.css", "text/css; charset=utf-8"),
    ("i18n/zh-CN.json", "application/json"),
    ("vendor/echarts/echarts.esm.min.js", "text/javascript; charset=utf-8"),
    ("vendor/echarts/LICENSE", "text/plain; charset=utf-8"),
    ("vendor/echarts/NOTICE", "text/plain; charset=utf-8"),
])
def test_serves_the_console_files(path: str, media: str) -> None:
    found = console_asset(path)
    assert found is not None and found[1] == media and len(found[0]) > 0


def test_echarts_is_the_apache_licensed_build() -> None:
    found = console_asset("vendor/echarts/LICENSE")
    assert found is not None and b"Apache License" in found[0]
    notice = console_asset("vendor/echarts/NOTICE")
    assert notice is not None and b"Apache ECharts" in notice[0]
    module = console_asset("vendor/echarts/echarts.esm.min.js")
    assert module is not None and b"export" in module[0][-2000:]


@pytest.mark.parametrize("path", [
    "index.html", "../assets.py", "pages/../../assets.py", "lib//dom.js", ".hidden.js", "pages/.x.js",
    "missing.js", "console", "a/b/c/d/e.js", "__init__.py", "",
])
def test_refuses_anything_else(path: str) -> None:
    assert console_asset(path) is None


def test_media_type_needs_a_known_kind() -> None:
    assert media_type_of("x.js") is not None and media_type_of("x.py") is None and media_type_of("x.html") is None
