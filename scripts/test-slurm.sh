# Sourced by scripts/test: makes Debian's Slurm (slurm-wlm) and munge available for the Slurm driver tests,
# which start their own throw-away cluster (zhisuan.drivers.slurm.testcluster). When Slurm cannot be had,
# exports ZHISUAN_TEST_SLURM_SKIP with the reason (the tests then skip) — except in CI, which fails.
slurm_present() { command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; }
unset ZHISUAN_TEST_SLURM_SKIP
if ! slurm_present; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== Slurm: installing Debian's slurm-wlm and munge for the Slurm driver tests"
    # the packages' post-install scripts cannot start services without an init system: harmless
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       slurm-wlm munge) >/dev/null 2>&1 || true
  fi
fi
if ! slurm_present; then
  reason="slurmctld/slurmd/munged not installed and cannot be installed here (needs root and apt-get: slurm-wlm munge)"
elif [ "$(id -u)" != 0 ]; then
  reason="the throw-away Slurm cluster runs its daemons as root"
else
  reason=""
fi
if [ -z "$reason" ]; then
  echo "== Slurm: $(slurmctld -V 2>/dev/null || echo slurmctld) — the tests start their own cluster"
elif [ "${CI:-}" = "true" ]; then
  echo "== Slurm: $reason; CI must not skip the Slurm tests" >&2; exit 1
else
  export ZHISUAN_TEST_SLURM_SKIP="$reason"
  echo "== Slurm: $reason: the Slurm tests will be SKIPPED" >&2
fi
