"""Iluvatar CoreX: the default ``ixsmi`` table (IX-ML), nvidia-smi-like:

    | 0    Iluvatar BI-V100         | 00000000:14:00.0     | 1500MHz   1200MHz    |
    | 0%   31C   P0    54W / 250W   | 513MiB / 32768MiB    | 0%        Default    |

Health: ``ERR!`` (or an error text) in a cell is a fault; heat is a warning.
"""

from __future__ import annotations

import re

from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.two_row_table import TableDialect, parse_two_row_table
from zhisuan.catalog import Catalog, default_catalog

DIALECT = TableDialect(
    tool="ixsmi", vendor="iluvatar", memory=re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB"), banner="IX-ML"
)


def parse_ixsmi(text: str, catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from the plain ``ixsmi`` output."""
    return parse_two_row_table(text, DIALECT, catalog or default_catalog())
