"""``python -m zhisuan.agent.detection``: print the detected devices as JSON.

On a machine without accelerators, point it at recordings:
``ZHISUAN_FAKE_SMI_DIR=src/zhisuan/agent/demo_fixtures/h100x8 python -m zhisuan.agent.detection``.
"""

from __future__ import annotations

import json
import sys

from zhisuan.agent.detection import detect_accelerators


def main() -> int:
    devices = detect_accelerators()
    json.dump([device.to_dict() for device in devices], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
