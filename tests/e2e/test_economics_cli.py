"""Leasing economics from the CLI against a real ``zhisuan up``: price book, lease, usage, invoice.

Dates are relative to today (the server runs on the real clock): the lease starts on the first
day of the month before last, so that month is a closed billing period.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.conftest import Platform
from zhisuan.core.economics.periods import add_months


def test_lease_usage_invoice_settlement_from_the_cli(platform: Platform, tmp_path: Path) -> None:
    today = datetime.now(UTC)
    start = add_months(datetime(today.year, today.month, 1, tzinfo=UTC), -2)
    period = f"{start.year:04d}-{start.month:02d}"
    iso = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    platform.cli("provider", "create", "dc-east", "--revenue-share", "0.7")
    platform.cli("site", "create", "east-1", "--engine", "slurm", "--region", "cn-east-1", "--provider", "dc-east")
    platform.cli("node", "add", "n1", "--site", "east-1", "--cpu", "128", "--memory-mib", "1024000",
                 "--accel", "a800:8")
    platform.cli("tenant", "create", "acme")

    book = platform.cli_json("pricebook", "create", "std", "--effective-from", iso,
                             "--rate", "a800:server_month=60000", "--rate", "qwen-7b:input_tokens=2",
                             "--rate", "qwen-7b:output_tokens=6")
    assert book["default"] is True and len(book["versions"][0]["rates"]) == 3

    contract = platform.cli_json("contract", "create", "--tenant", "acme", "--node", "east-1/n1",
                                 "--pricing-model", "server_month", "--unit-price", "75000", "--start", iso,
                                 "--closed-months", "36", "--open-months", "24", "--deposit", "150000")
    cid = str(contract["id"])
    assert platform.cli_json("contract", "activate", cid)["state"] == "active"
    clash = platform.cli("contract", "create", "--tenant", "acme", "--node", "east-1/n1", "--pricing-model",
                         "server_month", "--unit-price", "1", "--start", iso, "--closed-months", "1", check=False)
    assert clash.returncode == 1 and "east-1/n1" in clash.stderr and "[HTTP 409]" in clash.stderr
    month_14 = add_months(start, 13).strftime("%Y-%m-%dT%H:%M:%SZ")
    quote = platform.cli_json("contract", "penalty", cid, "--at", month_14)
    assert quote["contract_month"] == 14 and quote["penalty"] == "345000.00"  # 0.2 × 23 remaining months × 75,000

    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"event_id": "gw-1", "tenant": "acme", "provider": "dc-east", "model": "qwen-7b",
                                   "at": add_months(start, 0).replace(day=10).isoformat(),
                                   "input_tokens": 1_000_000, "output_tokens": 250_000}]))
    assert "accepted: 2 new records" in platform.cli("usage", "ingest", str(events)).stdout
    assert "replayed: 0 new records, 2 replayed" in platform.cli("usage", "ingest", str(events)).stdout

    [invoice] = platform.cli_json("invoice", "run", period)
    assert invoice["total"] == "75003.50"  # the lease's month + 1M input (2.00) + 0.25M output (1.50)
    lease = next(line for line in invoice["lines"] if line["pricing_model"] == "server_month")
    assert lease["price_source"] == f"contract:{cid}@a0" and len(lease["usage_record_keys"]) == 8
    assert "INV-acme-" in platform.cli("invoice", "list").stdout
    exported = platform.cli("invoice", "export", invoice["number"], "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows[-1]["line_no"] == "TOTAL" and rows[-1]["amount"] == "75003.50"

    summary = platform.cli_json("settlement", "run", period)
    assert summary["revenue"] == "75003.50" and summary["settlements"][0]["payout"] == "52502.45"
    assert summary["margin"] == "22501.05"
    assert platform.cli_json("settlement", "margin", period)["margin"] == "22501.05"
    assert platform.cli_json("market", "index")[0]["pricing_model"] in ("server_month", "input_tokens")
    assert platform.cli_json("allocation", "list", "--contract", cid)[0]["purpose"] == "contract"

    bad = platform.cli("pricebook", "create", "bad", "--rate", "a800:device_hour=-3", check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "unit_price" in bad.stderr
