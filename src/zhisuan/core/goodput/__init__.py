"""Goodput: where a training job's wall time goes, and how the platform answers faults.

Pure (no I/O, no clock, no globals). Shared by the live scheduler (``workloads``) and the goodput
simulator (``zhisuan sim goodput``), so the simulator's numbers come from the same decisions.

- ``breakdown``: a job's wall time split into queueing, productive compute, checkpoint overhead,
  lost (recomputed) work and restart time; the effective-training-time ratio (ETTR).
- ``restart``: whether and when a failed job restarts, on which hardware not, and when a failure is
  the user's (the same failure on different hardware) rather than the platform's.
"""
