"""The reference training program: small, deterministic, pure Python + numpy (no torch).

It speaks the platform's job-side protocol (see ``docs/goodput.md``):

- checkpoints atomically every N steps into ``ZHISUAN_CHECKPOINT_DIR`` as ``step-<N>`` directories
  (written into ``.tmp-step-<N>-<random>``, fsynced, renamed; ``MANIFEST.json`` holds every file's sha256);
- resumes from the highest complete, checksum-valid checkpoint, bit-exactly (parameters, optimizer state,
  the data-sampling RNG and the step are all saved);
- appends one JSON progress line per step to ``ZHISUAN_PROGRESS_FILE``;
- writes the final state's sha256 to ``--out``, so runs are compared by one string.

Run it as ``python -m zhisuan.trainer --steps 300 --checkpoint-every 25 --seed 7 --out result.json``.
"""
