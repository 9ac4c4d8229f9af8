"""MetaX: the default ``mx-smi`` table:

    | 0           MetaX C500             | 0000:0e:00.0        | 0%                   |
    | 35C         54W / 350W             | 826/65536 MiB       |                      |

Health: mx-smi's summary has no fault column; an error text in a cell is a fault, heat a warning.
"""

from __future__ import annotations

import re

from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.two_row_table import TableDialect, parse_two_row_table
from zhisuan.catalog import Catalog, default_catalog

DIALECT = TableDialect(
    tool="mx-smi", vendor="metax", memory=re.compile(r"(\d+)\s*/\s*(\d+)\s*MiB"), banner="MX-SMI"
)


def parse_mx_smi(text: str, catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from the plain ``mx-smi`` output."""
    return parse_two_row_table(text, DIALECT, catalog or default_catalog())
