"""How the CLI reaches a control plane: server and key from flags, environment or saved profile."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MAX_PAGE = 1000  # the largest page the server answers (inventory.router.MAX_PAGE)


class CliError(Exception):
    """Printed as one line on stderr; the command exits non-zero."""


def profile_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "zhisuan" / "cli.json"


def load_profile() -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(profile_path().read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_profile(server: str, key: str) -> Path:
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps({"server": server, "key": key}))
    path.chmod(0o600)
    return path


@dataclass
class ApiClient:
    server: str
    key: str | None

    @classmethod
    def from_environment(cls) -> ApiClient:
        profile = load_profile()
        server = os.environ.get("ZHISUAN_SERVER") or profile.get("server") or "http://127.0.0.1:8420"
        key = os.environ.get("ZHISUAN_API_KEY") or profile.get("key")
        return cls(server=server.rstrip("/"), key=key)

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self.send(method, path, body, params)
        return None if response.status_code == 204 else response.json()

    def send(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> httpx.Response:
        if not self.key:
            raise CliError("no API key: run 'zhisuan login --key KEY' or set ZHISUAN_API_KEY")
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            response = httpx.request(method, f"{self.server}/api/v1{path}", json=body, params=params,
                                     headers=headers, timeout=30)
        except httpx.TransportError as error:
            raise CliError(f"cannot reach zhisuan at {self.server}: {error}") from error
        if response.status_code >= 400:
            raise CliError(describe_error(response))
        return response

    def get_all(self, path: str, most: int | None = None, **params: Any) -> list[Any]:
        """Every item of a paginated listing (at most ``most``): follows ``X-Next-Cursor`` page after page."""
        return [item for page in self.pages(path, most, **params) for item in page]

    def pages(self, path: str, most: int | None = None, **params: Any) -> Iterator[list[Any]]:
        """A paginated listing's pages as they arrive (at most ``most`` items in all)."""
        query = {k: v for k, v in params.items() if v is not None}
        seen = 0
        while True:
            if most is not None:
                query["limit"] = min(most - seen, query.get("limit") or MAX_PAGE)
            response = self.send("GET", path, params=query)
            page = response.json()
            seen += len(page)
            yield page
            following = response.headers.get("x-next-cursor")
            if not following or (most is not None and seen >= most):
                return
            query["cursor"] = following

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def describe_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        field = f" (field: {error['field']})" if error.get("field") else ""
        return f"{error['message']}{field} [HTTP {response.status_code}]"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"
