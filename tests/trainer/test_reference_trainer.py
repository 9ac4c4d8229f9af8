"""The reference trainer: bit-exact resume after a SIGKILL, corrupt checkpoints skipped, the progress protocol."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhisuan.trainer.checkpoint import STEP_DIR, complete_steps, step_dir_name
from zhisuan.trainer.run import BAD_INPUT_EXIT, INJECTED_FAILURE_EXIT, main

PROTOCOL_KEYS = {"step", "tokens", "checkpoint_step", "checkpoint_s", "at"}


@pytest.fixture(autouse=True)
def no_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZHISUAN_CHECKPOINT_DIR", "ZHISUAN_PROGRESS_FILE", "RANK", "ZHISUAN_JOB_ATTEMPT"):
        monkeypatch.delenv(name, raising=False)


def run(tmp: Path, name: str, *extra: str, steps: int = 100, every: int = 20) -> dict:
    out = tmp / f"{name}.json"
    code = main(["--steps", str(steps), "--checkpoint-every", str(every), "--seed", "7", "--out", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reference_100(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An undisturbed 100-step run without checkpoints: what every resumed 100-step run must end as."""
    return run(tmp_path_factory.mktemp("reference"), "reference")


def read_progress(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_undisturbed_runs_agree_and_differ_by_seed(tmp_path: Path) -> None:
    a = run(tmp_path, "a")
    b = run(tmp_path, "b", "--checkpoint-dir", str(tmp_path / "ck"))
    assert main(["--steps", "100", "--seed", "8", "--out", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert a["sha256"] == b["sha256"] != c["sha256"]
    assert a["steps"] == 100 and a["resumed_from"] is None
    assert a["accuracy"] > 0.5  # it learns something (4 classes: chance is ~0.25)


def test_sigkill_mid_run_then_resume_ends_bit_exact(tmp_path: Path) -> None:
    reference = run(tmp_path, "reference", steps=120)
    ck, progress, out = tmp_path / "ck", tmp_path / "progress.jsonl", tmp_path / "killed.json"
    env = {**os.environ, "ZHISUAN_CHECKPOINT_DIR": str(ck), "ZHISUAN_PROGRESS_FILE": str(progress)}
    args = [sys.executable, "-m", "zhisuan.trainer", "--steps", "120", "--checkpoint-every", "20", "--seed", "7",
            "--step-seconds", "0.01", "--out", str(out)]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = read_progress(progress) if progress.exists() else []
        if lines and lines[-1]["step"] >= 50:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = read_progress(progress)[-1]
    assert 50 <= killed_at["step"] < 120 and not out.exists()

    resumed = subprocess.run(args, env=env, stderr=subprocess.PIPE, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(out.read_text())
    assert result["resumed_from"] == killed_at["checkpoint_step"] and result["resumed_from"] >= 40
    assert result["sha256"] == reference["sha256"]


def damage_truncate(step_dir: Path) -> None:
    path = step_dir / "w1.npy"
    path.write_bytes(path.read_bytes()[:40])


def damage_flip_byte(step_dir: Path) -> None:
    path = step_dir / "rng.json"
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))


def damage_no_manifest(step_dir: Path) -> None:
    (step_dir / "MANIFEST.json").unlink()


def damage_garbage_manifest(step_dir: Path) -> None:
    (step_dir / "MANIFEST.json").write_text("{not json")


def damage_missing_file(step_dir: Path) -> None:
    (step_dir / "v_w2.npy").unlink()


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip_byte, damage_no_manifest, damage_garbage_manifest,
                                    damage_missing_file])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, damage, reference_100: dict) -> None:
    ck = tmp_path / "ck"
    run(tmp_path, "partial", "--checkpoint-dir", str(ck), steps=90)  # checkpoints 40, 60, 80 kept
    assert [step for step, _ in complete_steps(ck)] == [80, 60, 40]
    damage(ck / step_dir_name(80))
    # and a crashed writer's leftovers: a temporary directory for a later step, never read
    abandoned = ck / ".tmp-step-0000000085-deadbeef"
    shutil.copytree(ck / step_dir_name(60), abandoned)
    result = run(tmp_path, "resumed", "--checkpoint-dir", str(ck))
    assert result["resumed_from"] == 60
    assert result["sha256"] == reference_100["sha256"]
    assert not abandoned.exists()
    assert all(STEP_DIR.match(p.name) for p in ck.iterdir())


def test_no_valid_checkpoint_starts_fresh(tmp_path: Path, reference_100: dict) -> None:
    ck = tmp_path / "ck"
    run(tmp_path, "partial", "--checkpoint-dir", str(ck), "--keep", "1", steps=30)  # only step 20
    damage_truncate(ck / step_dir_name(20))
    result = run(tmp_path, "resumed", "--checkpoint-dir", str(ck))
    assert result["resumed_from"] is None and result["sha256"] == reference_100["sha256"]


def test_progress_lines_follow_the_protocol(tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    before = time.time()
    run(tmp_path, "a", "--checkpoint-dir", str(tmp_path / "ck"), "--progress-file", str(progress), steps=50)
    lines = read_progress(progress)
    assert [line["step"] for line in lines] == list(range(0, 51))
    for line in lines:
        assert set(line) == PROTOCOL_KEYS
        assert isinstance(line["step"], int) and isinstance(line["tokens"], int) and line["tokens"] >= line["step"]
        assert isinstance(line["at"], float) and before <= line["at"] <= time.time()
        cp = line["checkpoint_step"]
        assert cp is None or (isinstance(cp, int) and cp % 20 == 0 and 0 < cp <= line["step"])
        assert (cp is None) == (line["checkpoint_s"] is None)
        assert line["checkpoint_s"] is None or line["checkpoint_s"] > 0
    assert lines[19]["checkpoint_step"] is None and lines[20]["checkpoint_step"] == 20
    assert lines[-1]["checkpoint_step"] == 40


def test_resumed_run_reports_its_checkpoint_from_the_first_line(tmp_path: Path) -> None:
    ck, progress = tmp_path / "ck", tmp_path / "progress.jsonl"
    run(tmp_path, "a", "--checkpoint-dir", str(ck), steps=50)
    run(tmp_path, "b", "--checkpoint-dir", str(ck), "--progress-file", str(progress), steps=60)
    first = read_progress(progress)[0]
    assert first["step"] == 40 and first["checkpoint_step"] == 40 and first["checkpoint_s"] is None


def test_only_rank_zero_writes_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    progress = tmp_path / "progress.jsonl"
    run(tmp_path, "a", "--checkpoint-dir", str(tmp_path / "ck"), "--progress-file", str(progress), steps=50)
    assert complete_steps(tmp_path / "ck") == []
    assert read_progress(progress)[-1]["checkpoint_step"] is None


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    run(tmp_path, "a", "--checkpoint-dir", str(ck), steps=50)
    assert main(["--steps", "60", "--seed", "8", "--checkpoint-dir", str(ck)]) == BAD_INPUT_EXIT


def test_injected_failure_fails_the_first_attempt_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = tmp_path / "ck"
    args = ["--steps", "50", "--checkpoint-every", "20", "--checkpoint-dir", str(ck), "--fail-at-step", "30"]
    monkeypatch.setenv("ZHISUAN_JOB_ATTEMPT", "1")
    assert main(args) == INJECTED_FAILURE_EXIT
    assert main([*args, "--fail-always"]) == INJECTED_FAILURE_EXIT
    monkeypatch.setenv("ZHISUAN_JOB_ATTEMPT", "2")
    assert main([*args, "--fail-always"]) == INJECTED_FAILURE_EXIT
    assert main(args) == 0


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--checkpoint-every", "-1"], ["--step-seconds", "-1"]])
def test_bad_arguments_exit_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(bad)
    assert exit_info.value.code == 2
