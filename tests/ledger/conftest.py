"""The ledger's API tests run over the same small world as the market and billing tests."""

from tests.api.conftest import api, clock, world, world_templates  # noqa: F401
