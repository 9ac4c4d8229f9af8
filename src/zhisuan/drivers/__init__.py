"""Workload drivers: one module per engine behind one small interface (``base.Driver``)."""
