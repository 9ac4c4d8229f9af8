"""Billing: the allocation ledger, usage records, metering, invoices and settlements."""
