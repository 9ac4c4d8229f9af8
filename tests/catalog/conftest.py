"""The catalog's API tests run over the API tests' world (tenants, providers, sites, both databases)."""

from __future__ import annotations

from tests.api import conftest as api_fixtures

clock, world, world_templates = api_fixtures.clock, api_fixtures.world, api_fixtures.world_templates
