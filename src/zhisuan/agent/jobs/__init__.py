"""The node agent's job runner (the ``local`` engine's execution side): runs job workers as processes on
this machine — per-tenant users and directories, CPU/memory limits, time limits, logs — and keeps
enough on disk that a restarted agent adopts its running workers instead of starting them again."""

from zhisuan.agent.jobs.launch import WorkerLaunch, WorkerStatus
from zhisuan.agent.jobs.runner import WorkerRunner

__all__ = ["WorkerLaunch", "WorkerRunner", "WorkerStatus"]
