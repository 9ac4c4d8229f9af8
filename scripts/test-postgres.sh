# Sourced by scripts/test: exports ZHISUAN_TEST_POSTGRES_ADMIN_URL, starting PostgreSQL if needed.
pg_answers() { uv run --no-sync python - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}
if [ -n "${ZHISUAN_TEST_POSTGRES_ADMIN_URL:-}" ]; then
  echo "== PostgreSQL: using \$ZHISUAN_TEST_POSTGRES_ADMIN_URL"
elif pg_answers "postgresql://postgres@127.0.0.1:5432/postgres"; then
  export ZHISUAN_TEST_POSTGRES_ADMIN_URL="postgresql://postgres@127.0.0.1:5432/postgres"
  echo "== PostgreSQL: using the server on 127.0.0.1:5432"
else
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== PostgreSQL: installing Debian's postgresql package for a throw-away test server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql) >/dev/null
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  if [ -n "$initdb" ]; then
    bin=$(dirname "$initdb"); pgdir=$(mktemp -d /tmp/zhisuan-pg.XXXXXX); port=55432
    runas=(); [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd -r postgres; chown postgres "$pgdir"; runas=(runuser -u postgres --); }
    "${runas[@]}" "$bin/initdb" -D "$pgdir/data" -U postgres -A trust >/dev/null
    "${runas[@]}" "$bin/pg_ctl" -D "$pgdir/data" -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1" -l "$pgdir/log" -w start >/dev/null
    trap '"${runas[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
    export ZHISUAN_TEST_POSTGRES_ADMIN_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "== PostgreSQL: started a throw-away server on port $port"
  elif [ "${CI:-}" = "true" ]; then
    echo "== PostgreSQL: none reachable and none can be started; CI must not skip these tests" >&2; exit 1
  else
    echo "== PostgreSQL: none reachable and none can be started: the PostgreSQL tests will be SKIPPED" >&2
  fi
fi
