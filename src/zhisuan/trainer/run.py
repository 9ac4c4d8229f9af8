"""The reference trainer's command line and training loop.

    python -m zhisuan.trainer --steps 300 --checkpoint-every 25 --seed 7 --step-seconds 0.02 --out result.json

Environment (set by the platform; flags override): ``ZHISUAN_CHECKPOINT_DIR`` (where checkpoints go;
none → no checkpoints), ``ZHISUAN_PROGRESS_FILE`` (where progress lines go), ``RANK`` (only rank 0 writes
checkpoints — the state is replicated across ranks — every rank reports progress).

Fault injection for tests of the platform (named as such): ``--fail-at-step K`` exits with code 3 when
step K is reached on the job's first attempt (``ZHISUAN_JOB_ATTEMPT`` unset or the lowest attempt number;
``--fail-always``: on every attempt, i.e. a user error that fails anywhere);
``--hang-at-step K`` stops reporting and sleeps when step K is reached.

Exit codes: 0 done, 2 bad arguments or a checkpoint from a different configuration, 3 injected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from zhisuan.trainer.checkpoint import complete_steps, latest_valid, prune, remove_abandoned_tmp, write_checkpoint
from zhisuan.trainer.model import ModelConfig, TrainState, accuracy, initial_state, make_dataset, train_step
from zhisuan.trainer.progress import ProgressFile

INJECTED_FAILURE_EXIT = 3
BAD_INPUT_EXIT = 2
FIRST_ATTEMPT = 1  # the platform numbers attempts from 1 (0 when run by hand)


class ForeignCheckpoint(Exception):
    """The checkpoint directory holds another run's checkpoints: resuming would silently mix runs."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m zhisuan.trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="total training steps")
    parser.add_argument("--checkpoint-every", type=int, default=25, help="checkpoint every N steps (0: never)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--step-seconds", type=float, default=0.0, help="sleep per step (so tests can kill mid-run)")
    parser.add_argument("--out", type=Path, help="write the final result (with the state's sha256) here")
    parser.add_argument("--checkpoint-dir", type=Path, help="overrides ZHISUAN_CHECKPOINT_DIR")
    parser.add_argument("--progress-file", type=Path, help="overrides ZHISUAN_PROGRESS_FILE")
    parser.add_argument("--keep", type=int, default=3, help="complete checkpoints kept (older are deleted)")
    parser.add_argument("--fail-at-step", type=int, help="fault injection: exit 3 at this step (once)")
    parser.add_argument("--fail-always", action="store_true", help="with --fail-at-step: on every attempt")
    parser.add_argument("--hang-at-step", type=int, help="fault injection: stop reporting and sleep at this step")
    args = parser.parse_args(argv)
    for flag in ("steps", "checkpoint_every", "keep"):
        if getattr(args, flag) < (1 if flag != "checkpoint_every" else 0):
            parser.error(f"--{flag.replace('_', '-')} must be {'≥ 0' if flag == 'checkpoint_every' else '≥ 1'}")
    if args.step_seconds < 0:
        parser.error("--step-seconds must be ≥ 0")
    env_dir = os.environ.get("ZHISUAN_CHECKPOINT_DIR")
    args.checkpoint_dir = args.checkpoint_dir or (Path(env_dir) if env_dir else None)
    env_progress = os.environ.get("ZHISUAN_PROGRESS_FILE")
    args.progress_file = args.progress_file or (Path(env_progress) if env_progress else None)
    args.rank = int(os.environ.get("RANK", "0"))
    args.first_attempt = int(os.environ.get("ZHISUAN_JOB_ATTEMPT", "0")) <= FIRST_ATTEMPT
    return args


def resume(args: argparse.Namespace, config: ModelConfig) -> tuple[TrainState, int | None]:
    """The state to start from: the newest valid checkpoint (refusing one of another configuration),
    else a fresh start. Returns the state and the step resumed from (None for a fresh start)."""
    state = initial_state(config, args.seed)
    if args.checkpoint_dir is None:
        return state, None
    loaded, skipped = latest_valid(args.checkpoint_dir)
    for bad in skipped:
        log(f"skipping checkpoint {bad.path.name}: {bad.reason}")
    if loaded is None:
        return state, None
    expected = {"seed": args.seed, "config": asdict(config)}
    if {k: loaded.meta.get(k) for k in expected} != expected:
        raise ForeignCheckpoint(f"checkpoint {loaded.path} was written by another configuration (seed or model); "
                                "use a fresh --checkpoint-dir")
    state.step = loaded.step
    state.arrays = {name: loaded.arrays[name] for name in state.arrays}
    state.rng.bit_generator.state = loaded.rng_state
    log(f"resumed from {loaded.path.name}")
    return state, loaded.step


def log(message: str) -> None:
    print(f"[trainer rank {os.environ.get('RANK', '0')}] {message}", file=sys.stderr, flush=True)


def checkpoint_now(args: argparse.Namespace, state: TrainState, config: ModelConfig) -> tuple[int | None, float | None]:
    """Rank 0 writes a checkpoint; other ranks report the newest complete one rank 0 has published."""
    if args.rank != 0:
        newest = complete_steps(args.checkpoint_dir)
        return (newest[0][0] if newest and newest[0][0] <= state.step else None), None
    started = time.perf_counter()
    write_checkpoint(args.checkpoint_dir, state.step, state.arrays, state.rng.bit_generator.state,
                     {"seed": args.seed, "config": asdict(config)})
    prune(args.checkpoint_dir, args.keep)
    return state.step, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = ModelConfig()
    x, y = make_dataset(config, args.seed)
    if args.checkpoint_dir is not None and args.rank == 0:
        remove_abandoned_tmp(args.checkpoint_dir)
    try:
        state, resumed_from = resume(args, config)
    except ForeignCheckpoint as error:
        log(f"error: {error}")
        return BAD_INPUT_EXIT
    progress = ProgressFile(args.progress_file)
    checkpoint_step, checkpoint_s = resumed_from, None
    progress.report(state.step, state.step * config.batch, checkpoint_step, checkpoint_s)
    loss = float("nan")
    try:
        while state.step < args.steps:
            if args.fail_at_step == state.step + 1 and (args.fail_always or args.first_attempt):
                log(f"injected failure at step {state.step + 1}")
                return INJECTED_FAILURE_EXIT
            if args.hang_at_step == state.step + 1:
                log(f"injected hang at step {state.step + 1}")
                while True:
                    time.sleep(3600)
            loss = train_step(state, config, x, y)
            if args.step_seconds:
                time.sleep(args.step_seconds)
            due = args.checkpoint_every and state.step % args.checkpoint_every == 0 and state.step < args.steps
            if args.checkpoint_dir is not None and due:
                checkpoint_step, checkpoint_s = checkpoint_now(args, state, config)
            progress.report(state.step, state.step * config.batch, checkpoint_step, checkpoint_s)
    finally:
        progress.close()
    result = {"steps": state.step, "sha256": state.digest(), "loss": loss, "accuracy": accuracy(state.arrays, x, y),
              "resumed_from": resumed_from, "seed": args.seed}
    if args.out is not None:  # every rank holds the same state: same bytes, so ranks may share the path
        tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, args.out)
    log(f"done: step {state.step}, loss {loss:.4f}, sha256 {result['sha256'][:16]}…")
    return 0


