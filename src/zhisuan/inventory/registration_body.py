"""A registration body checked without the validation model, when it is the plain shape agents send.

Validating ``NodeRegister`` runs the request models' Python validator (``identity.schemas.Strict``:
strict integers, no NUL) once per field — 62 calls for a node of 8 devices, ~0.2 ms of CPU, a
fifth of what one registration may cost at 1,000 registrations/s. ``plain_registration`` accepts
only bodies that certainly validate to the same values — exact JSON types, every string already
stripped and without NUL, every bound and pattern of the model checked here — and builds the model
without validating it again (``built``). Anything else answers None, and the caller
validates with the model, which accepts it or names the field at fault: so the answer for any body
is the model's own. ``tests/api/test_register_shortcut.py`` compares both on varied bodies.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel

from zhisuan.inventory.schemas import (
    MAX_DEVICE_INDEX,
    MAX_DEVICES_PER_NODE,
    MAX_LABELS,
    NODE_NAME_PATTERN,
    DeviceReport,
    NodeRegister,
)

NODE_NAME = re.compile(NODE_NAME_PATTERN)
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
NODE_FIELDS = frozenset(NodeRegister.model_fields)
DEVICE_FIELDS = frozenset(DeviceReport.model_fields)
REQUIRED_NODE = frozenset({"name", "cpu_cores", "memory_mib"})
Model = TypeVar("Model", bound=BaseModel)


def built(model: type[Model], values: dict[str, Any], given: set[str]) -> Model:
    """What ``model.model_construct(_fields_set=given, **values)`` makes (``values``: every field),
    without its per-call work (~10 µs, nine times a node of 8 devices): the instance's dict, the
    fields given, no extra fields (the request models forbid them), no private attributes."""
    made = model.__new__(model)
    object.__setattr__(made, "__dict__", values)
    object.__setattr__(made, "__pydantic_fields_set__", given)
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


def plain_text(value: Any, longest: int, shortest: int = 0) -> bool:
    """A JSON string the model keeps as it is: no surrounding whitespace to strip, no NUL, in bounds.
    (Python's ``strip`` removes a superset of what the model strips, so a string it leaves alone the
    model leaves alone too.)"""
    return (type(value) is str and shortest <= len(value) <= longest and "\x00" not in value
            and value == value.strip())


def integer(value: Any, highest: int) -> bool:
    return type(value) is int and 0 <= value <= highest


def plain_registration(payload: Any) -> NodeRegister | None:
    """``payload`` (a parsed JSON body) as the ``NodeRegister`` the model would make of it, or None
    when this check cannot tell (the model decides then)."""
    if type(payload) is not dict or not REQUIRED_NODE <= payload.keys() <= NODE_FIELDS:
        return None
    name, labels = payload["name"], payload.get("labels", {})
    version, reports = payload.get("agent_version"), payload.get("devices", [])
    if not (plain_text(name, 128) and NODE_NAME.match(name) and integer(payload["cpu_cores"], 100_000)
            and integer(payload["memory_mib"], 1_000_000_000) and (version is None or plain_text(version, 32))
            and type(labels) is dict and len(labels) <= MAX_LABELS
            and all(plain_text(key, 63, 1) and LABEL_KEY.match(key) and plain_text(value, 255)
                    for key, value in labels.items())
            and type(reports) is list and len(reports) <= MAX_DEVICES_PER_NODE):
        return None
    devices = []
    for report in reports:
        device = plain_device(report)
        if device is None:
            return None
        devices.append(device)
    return built(NodeRegister, {"name": name, "cpu_cores": payload["cpu_cores"], "memory_mib": payload["memory_mib"],
                                "labels": labels, "agent_version": version, "devices": devices}, set(payload))


def plain_device(report: Any) -> DeviceReport | None:
    if type(report) is not dict or "index" not in report or "model" not in report or not report.keys() <= DEVICE_FIELDS:
        return None
    memory, healthy = report.get("memory_mib"), report.get("healthy", True)
    uuid, name, detail = report.get("uuid", ""), report.get("reported_name", ""), report.get("health_detail", "")
    if not (integer(report["index"], MAX_DEVICE_INDEX) and plain_text(report["model"], 128, 1)
            and plain_text(uuid, 128) and plain_text(name, 128) and plain_text(detail, 255)
            and (memory is None or integer(memory, 10_000_000)) and type(healthy) is bool):
        return None
    return built(DeviceReport, {"index": report["index"], "uuid": uuid, "model": report["model"],
                                "reported_name": name, "memory_mib": memory, "healthy": healthy,
                                "health_detail": detail}, set(report))
