"""Imports every domain's models so that ``Base.metadata`` knows all tables (Alembic needs this)."""

from zhisuan.billing import models as billing_models  # noqa: F401
from zhisuan.catalog import records as catalog_records  # noqa: F401
from zhisuan.exchange import models as exchange_models  # noqa: F401
from zhisuan.identity import models as identity_models  # noqa: F401
from zhisuan.inventory import models as inventory_models  # noqa: F401
from zhisuan.market import models as market_models  # noqa: F401
from zhisuan.serving import models as serving_models  # noqa: F401
from zhisuan.store import leases  # noqa: F401
from zhisuan.store.base import Base
from zhisuan.utilisation import models as utilisation_models  # noqa: F401
from zhisuan.workloads import models as workload_models  # noqa: F401

metadata = Base.metadata
