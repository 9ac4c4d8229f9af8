"""Placement on the live inventory: builds a frozen snapshot and asks the pure core (core.placement)."""
