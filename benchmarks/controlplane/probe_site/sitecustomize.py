"""Loaded by every Python process started with this directory on ``PYTHONPATH``: installs the pause
probe (``pause_probe.py``) in ``zhisuan up`` processes when ``ZHISUAN_PAUSE_PROBE`` names a directory."""

import os
import sys

if os.environ.get("ZHISUAN_PAUSE_PROBE") and sys.orig_argv[-1:] and "up" in sys.orig_argv:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import pause_probe

    pause_probe.install(os.environ["ZHISUAN_PAUSE_PROBE"])
