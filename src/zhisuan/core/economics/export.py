"""Pure invoice export: CSV text and a JSON-ready dict (the caller writes them anywhere).

Money and quantities are rendered as decimal strings (never floats) so nothing is lost in JSON.
``billable_quantity`` and ``unit_price`` are shown to 6 decimal places for reading only; the
line ``amount`` was computed from the exact values (see ``rating``).
"""

import csv
import io
from decimal import Decimal
from typing import Any

from zhisuan.core.economics.rating import Invoice, InvoiceLine

DISPLAY = Decimal("0.000001")
CSV_COLUMNS = (
    "invoice_id", "tenant_id", "period", "line_no", "provider_id", "model", "pricing_model", "tier",
    "site_id", "region", "contract_id", "usage_quantity", "billable_quantity", "unit", "list_price",
    "discount", "unit_price", "amount", "currency", "price_source", "usage_records",
)


def _line_fields(invoice: Invoice, line: InvoiceLine) -> dict[str, Any]:
    s = line.scope
    return {
        "invoice_id": invoice.invoice_id, "tenant_id": invoice.tenant_id, "period": invoice.period.label,
        "line_no": line.line_no, "provider_id": s.provider_id, "model": s.model,
        "pricing_model": str(s.pricing_model), "tier": str(s.tier), "site_id": s.site_id or "",
        "region": s.region or "", "contract_id": s.contract_id or "",
        "usage_quantity": str(line.usage_quantity),
        "billable_quantity": str(line.billable_quantity.quantize(DISPLAY)), "unit": line.unit,
        "list_price": str(line.list_price), "discount": str(line.discount),
        "unit_price": str(line.unit_price.quantize(DISPLAY)), "amount": str(line.amount),
        "currency": line.currency, "price_source": str(line.price_source),
        "usage_records": len(line.usage_record_keys),
    }


def invoice_to_csv_text(invoice: Invoice) -> str:
    """One CSV row per line plus a final ``TOTAL`` row; RFC 4180 quoting, ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in invoice.lines:
        writer.writerow(_line_fields(invoice, line))
    writer.writerow({"invoice_id": invoice.invoice_id, "tenant_id": invoice.tenant_id,
                     "period": invoice.period.label, "line_no": "TOTAL", "amount": str(invoice.total),
                     "currency": invoice.currency})
    return buffer.getvalue()


def invoice_to_json_obj(invoice: Invoice, *, include_record_keys: bool = True) -> dict[str, Any]:
    """A JSON-serialisable dict; ``include_record_keys`` lists every usage record key per line."""
    lines = []
    for line in invoice.lines:
        fields = _line_fields(invoice, line)
        for name in ("invoice_id", "tenant_id", "period"):
            del fields[name]
        fields["exact_amount"] = str(line.exact_amount)
        if line.description:  # an ETTR credit says why: measured ETTR, target, tier
            fields["description"] = line.description
        if include_record_keys:
            fields["usage_record_keys"] = list(line.usage_record_keys)
        lines.append(fields)
    return {
        "invoice_id": invoice.invoice_id, "tenant_id": invoice.tenant_id, "period": invoice.period.label,
        "period_start": invoice.period.start.isoformat(), "period_end": invoice.period.end.isoformat(),
        "currency": invoice.currency, "total": str(invoice.total), "lines": lines,
    }
