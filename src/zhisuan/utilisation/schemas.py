"""Answers of the utilisation history endpoint."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel


class UtilisationPoint(BaseModel):
    start: datetime
    devices: Decimal  # mean devices seen in the window
    allocated: Decimal  # mean devices allocated (held by the ledger)
    utilisation: Decimal | None  # allocated device-time / device-time, 0–1


class UtilisationSeries(BaseModel):
    name: str  # an accelerator model, or a site
    points: list[UtilisationPoint]


class UtilisationHistory(BaseModel):
    resolution: str
    group: str
    since: datetime
    until: datetime
    series: list[UtilisationSeries]
