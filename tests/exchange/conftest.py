"""The exchange's API tests run over the API tests' world (two tenants, two providers, both databases).

Until ``zhisuan.core.matching`` lands, the test-only stand-in (``standin_matching``) is installed
under that name; with the real matcher present it is never used.
"""

from __future__ import annotations

import importlib
import sys

from tests.api import conftest as api_fixtures
from tests.exchange import standin_matching

try:
    importlib.import_module("zhisuan.core.matching")
    REAL_MATCHER = True
except ImportError:
    sys.modules["zhisuan.core.matching"] = standin_matching
    REAL_MATCHER = False

# The API tests' fixtures (a world of tenants, providers and sites over each database), shared here.
clock, world, world_templates = api_fixtures.clock, api_fixtures.world, api_fixtures.world_templates
