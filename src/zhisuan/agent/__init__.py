"""Node agent: runs on every machine of a Site, detects its accelerators and reports their health."""
