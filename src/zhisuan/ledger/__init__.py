"""The allocation ledger: the one place every holder of devices (and of CPU/memory) goes through."""
