"""The gateway fixtures, shared with tests/gateway."""

from tests.gateway.conftest import fake_upstream, gateway  # noqa: F401
