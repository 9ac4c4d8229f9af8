"""Accelerator detection for the node agent: vendor SMI tools → DetectedDevice.

Every parser is pure (text in, devices out) and tested on recorded outputs; ``detect_accelerators``
runs the tools through an injectable runner and never raises.
"""

from zhisuan.agent.detection.detect import (
    DEMO_FIXTURE_SETS,
    FAKE_SMI_DIR_ENV,
    default_runner,
    demo_fixture_dir,
    detect_accelerators,
)
from zhisuan.agent.detection.device import DetectedDevice, SmiParseError
from zhisuan.agent.detection.runners import CommandResult, CommandRunner, FixtureRunner, SubprocessRunner

__all__ = [
    "DEMO_FIXTURE_SETS",
    "FAKE_SMI_DIR_ENV",
    "CommandResult",
    "CommandRunner",
    "DetectedDevice",
    "FixtureRunner",
    "SmiParseError",
    "SubprocessRunner",
    "default_runner",
    "demo_fixture_dir",
    "detect_accelerators",
]
