"""Reading the fleet's utilisation from the ledger, storing its roll-ups, and answering history queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, tuple_
from sqlalchemy.orm import Session

from zhisuan.core.utilisation import (
    FULL_DEVICE,
    MAX_SPAN,
    RESOLUTIONS,
    Bucket,
    Point,
    Reading,
    bucket_start,
    expired_before,
    points,
)
from zhisuan.errors import InvalidInput
from zhisuan.identity.access import Principal, require_role
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.ledger.models import Allocation
from zhisuan.ledger.service import live_at
from zhisuan.utilisation.models import UtilisationBucket


def read_fleet(session: Session, at: datetime) -> list[Reading]:
    """Devices and milli-devices allocated per (site, model) at ``at``, in one grouped query: every
    live device hold of the ledger (leases, jobs, services, manual holds), each device capped at one
    whole device. Quota entitlements hold no particular device and are not counted here."""
    held = (select(Allocation.device_id.label("device_id"), func.sum(Allocation.milli).label("milli"))
            .where(Allocation.device_id.is_not(None), live_at(at)).group_by(Allocation.device_id).subquery())
    capped = case((held.c.milli > FULL_DEVICE, FULL_DEVICE), else_=func.coalesce(held.c.milli, 0))
    rows = session.execute(
        select(Node.site_id, Device.model, func.count(Device.id), func.sum(capped))
        .join(Device.node).outerjoin(held, held.c.device_id == Device.id)
        .group_by(Node.site_id, Device.model).order_by(Node.site_id, Device.model))
    return [Reading(site_id, model, int(count), int(milli or 0)) for site_id, model, count, milli in rows]


def to_bucket(row: UtilisationBucket) -> Bucket:
    return Bucket(row.resolution, row.start, row.site_id, row.model, row.samples, row.devices, row.allocated, row.peak)


def stored_buckets(session: Session, at: datetime) -> list[Bucket]:
    """The buckets a sample at ``at`` may add to (its minute, hour and day windows)."""
    windows = [(resolution, bucket_start(at, resolution)) for resolution in RESOLUTIONS]
    rows = session.execute(select(UtilisationBucket).where(
        tuple_(UtilisationBucket.resolution, UtilisationBucket.start).in_(windows))).scalars()
    return [to_bucket(row) for row in rows]


def write_buckets(session: Session, buckets: Sequence[Bucket], now: datetime) -> int:
    """Insert or overwrite ``buckets`` by key, then drop what is past retention; returns rows deleted."""
    keys = [b.key for b in buckets]
    rows = {(r.resolution, r.start, r.site_id, r.model): r for r in session.execute(
        select(UtilisationBucket).where(tuple_(UtilisationBucket.resolution, UtilisationBucket.start,
                                               UtilisationBucket.site_id, UtilisationBucket.model).in_(keys))
    ).scalars()} if keys else {}
    live_sites = set(session.execute(select(Site.id)).scalars())
    for bucket in buckets:
        if bucket.site_id not in live_sites:
            continue  # the site was deleted since the reading
        row = rows.get(bucket.key)
        if row is None:
            row = UtilisationBucket(resolution=bucket.resolution, start=bucket.start, site_id=bucket.site_id,
                                    model=bucket.model)
            session.add(row)
        row.samples, row.devices = bucket.samples, bucket.devices
        row.allocated, row.peak = bucket.allocated, bucket.peak
    cutoffs = expired_before(now)
    result = session.execute(delete(UtilisationBucket).where(or_(*(
        (UtilisationBucket.resolution == resolution) & (UtilisationBucket.start < cutoff)
        for resolution, cutoff in cutoffs.items()))))
    return int(getattr(result, "rowcount", 0) or 0)


def check_window(resolution: str, since: datetime, until: datetime) -> None:
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"resolution must be one of {', '.join(RESOLUTIONS)}", field="resolution")
    if until <= since:
        raise InvalidInput("until must be after since", field="until")
    if until - since > MAX_SPAN[resolution]:
        raise InvalidInput(f"at most {MAX_SPAN[resolution]} of {resolution} buckets per request: "
                           "choose a coarser resolution or a shorter window", field="since")


def history(session: Session, principal: Principal, resolution: str, since: datetime, until: datetime,
            group: str) -> dict[str, list[Point]]:
    """Series name (a model, or a site) → its points, oldest first.

    Operators see every site; a provider only its own sites; tenants are refused (the fleet's
    occupancy is the platform's and its providers' business)."""
    require_role(principal, "operator", "provider")
    check_window(resolution, since, until)
    if group not in ("model", "site"):
        raise InvalidInput("group must be 'model' or 'site'", field="group")
    query = (select(UtilisationBucket, Site.name).join(Site, Site.id == UtilisationBucket.site_id)
             .where(UtilisationBucket.resolution == resolution,  # the windows holding any instant of [since, until]
                    UtilisationBucket.start >= bucket_start(since, resolution), UtilisationBucket.start <= until))
    if principal.role == "provider":
        query = query.where(Site.provider_id == principal.provider_id)
    series: dict[str, list[Bucket]] = {}
    for row, site_name in session.execute(query):
        series.setdefault(row.model if group == "model" else site_name, []).append(to_bucket(row))
    return {name: points(buckets) for name, buckets in sorted(series.items())}
