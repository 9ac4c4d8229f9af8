"""The exchange's API tests run over the API tests' world (two tenants, two providers, both databases),
with the real matcher (``zhisuan.core.matching``, HiGHS)."""

from __future__ import annotations

from tests.api import conftest as api_fixtures

# The API tests' fixtures (a world of tenants, providers and sites over each database), shared here.
clock, world, world_templates = api_fixtures.clock, api_fixtures.world, api_fixtures.world_templates
