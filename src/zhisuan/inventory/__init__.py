"""Inventory (纳管): providers, sites, nodes and their accelerators."""
