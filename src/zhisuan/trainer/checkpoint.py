"""Atomic, checksummed checkpoints in the platform's layout, and finding the newest valid one.

Layout in the checkpoint directory (the protocol in ``docs/goodput.md``)::

    step-0000000025/            one directory per complete checkpoint (step zero-padded to 10 digits)
        w1.npy … v_b2.npy       the arrays
        rng.json                the minibatch sampler's bit-generator state
        MANIFEST.json           {"step": 25, "files": {name: sha256hex}, "format": …, "meta": {…}}
    .tmp-step-0000000050-3f9a…  a checkpoint being written (or abandoned by a crash): never read

Writing: every file goes into a fresh ``.tmp-step-<N>-<random>`` sibling and is fsynced, the manifest is
written last, the directory is renamed to ``step-<N>`` (``rename`` is atomic on POSIX) and the parent
directory is fsynced so the rename itself survives a power cut. So a ``step-<N>`` directory is either
complete or was damaged afterwards — and the reader checks each file's sha256 against the manifest, so
damage is caught too. Reading takes the highest ``step-<N>`` that passes; others are skipped (fall back).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "MANIFEST.json"
FORMAT = "zhisuan-trainer/1"
STEP_DIR = re.compile(r"^step-(\d{10})$")
TMP_PREFIX = ".tmp-step-"


def step_dir_name(step: int) -> str:
    return f"step-{step:010d}"


@dataclass(frozen=True)
class LoadedCheckpoint:
    step: int
    path: Path
    arrays: dict[str, np.ndarray]
    rng_state: dict[str, Any]
    meta: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def _write_synced(path: Path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(
    root: Path, step: int, arrays: dict[str, np.ndarray], rng_state: Mapping[str, Any], meta: dict[str, Any]
) -> Path:
    """Write one checkpoint atomically; returns the final ``step-<N>`` path."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{step:010d}-{secrets.token_hex(4)}"
    tmp.mkdir()
    files: dict[str, str] = {}
    for name, array in sorted(arrays.items()):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        files[f"{name}.npy"] = _write_synced(tmp / f"{name}.npy", buffer.getvalue())
    files["rng.json"] = _write_synced(tmp / "rng.json", json.dumps(rng_state, sort_keys=True).encode())
    manifest = {"step": step, "files": files, "format": FORMAT, "meta": meta}
    _write_synced(tmp / MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())
    _fsync_dir(tmp)
    final = root / step_dir_name(step)
    if final.exists():  # a replay of the same step after a crash between rename and progress: same content
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    return final


def _verified_bytes(directory: Path, name: str, expected: str) -> bytes:
    data = (directory / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{name}: checksum mismatch")
    return data


def read_checkpoint(directory: Path) -> LoadedCheckpoint:
    """Load and verify one ``step-<N>`` directory; ``ValueError``/``OSError`` says why it is unusable."""
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"unknown format {manifest.get('format')!r}")
    step = manifest["step"]
    if directory.name != step_dir_name(step):
        raise ValueError(f"manifest step {step} does not match the directory name")
    arrays: dict[str, np.ndarray] = {}
    rng_state: dict[str, Any] = {}
    for name, digest in manifest["files"].items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad file name {name!r} in manifest")
        data = _verified_bytes(directory, name, digest)
        if name == "rng.json":
            rng_state = json.loads(data)
        elif name.endswith(".npy"):
            arrays[name[: -len(".npy")]] = np.load(io.BytesIO(data), allow_pickle=False)
    if not rng_state:
        raise ValueError("rng.json missing from the manifest")
    return LoadedCheckpoint(step, directory, arrays, rng_state, manifest.get("meta", {}))


def complete_steps(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-<N>`` directory holding a manifest, highest step first (unverified)."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and (entry / MANIFEST).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


def latest_valid(root: Path) -> tuple[LoadedCheckpoint | None, list[Skipped]]:
    """The highest checkpoint whose manifest and checksums verify, and the newer ones skipped (with why)."""
    skipped: list[Skipped] = []
    candidates = {entry for entry in root.iterdir() if STEP_DIR.match(entry.name)} if root.is_dir() else set()
    with_manifest = {path for _, path in complete_steps(root)}
    skipped.extend(Skipped(p, "no MANIFEST.json (half-written)") for p in sorted(candidates - with_manifest))
    for _, path in complete_steps(root):
        try:
            return read_checkpoint(path), skipped
        except (OSError, ValueError, KeyError, TypeError) as error:
            skipped.append(Skipped(path, str(error) or type(error).__name__))
    return None, skipped


def prune(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (older ones are never resumed from)."""
    for _, path in complete_steps(root)[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned_tmp(root: Path) -> None:
    """Remove ``.tmp-step-*`` directories left by a crashed writer (only rank 0 writes, so none is live)."""
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
