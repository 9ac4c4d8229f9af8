"""Tenancy and access: tenants, users, roles, API keys, login and the audit log."""
