"""The console's files as the API serves them under /console/: ES modules, styles, message catalogs
and the vendored Apache ECharts with its licence texts.

Only files below ``static/`` with a known kind are served; the page itself (index.html) is served at
``/`` and not here, and no path part may be empty or start with a dot (no ``..``, no hidden files).
"""

from __future__ import annotations

from importlib import resources

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
}
LICENCE_FILES = {"LICENSE", "NOTICE", "LICENSE-d3"}
MAX_DEPTH = 4


def media_type_of(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) > MAX_DEPTH or any(not part or part.startswith(".") for part in parts):
        return None
    name = parts[-1]
    if name in LICENCE_FILES:
        return "text/plain; charset=utf-8"
    suffix = name[name.rfind("."):] if "." in name else ""
    return MEDIA_TYPES.get(suffix)


def console_asset(path: str) -> tuple[bytes, str] | None:
    """The file's bytes and media type, or None when it is not a console asset."""
    media = media_type_of(path)
    if media is None:
        return None
    node = resources.files("zhisuan.console").joinpath("static", *path.split("/"))
    if not node.is_file():
        return None
    return node.read_bytes(), media


def console_page() -> str:
    return resources.files("zhisuan.console").joinpath("static/index.html").read_text(encoding="utf-8")
