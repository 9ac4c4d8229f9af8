# Sourced by scripts/test: makes Debian's chromium available for the Playwright console tests, and CJK
# fonts so Chinese pages render as glyphs (not boxes) in their screenshots.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "install ok installed" || missing="$missing fonts-noto-cjk"
  if [ -n "$missing" ]; then
    echo "== browser: installing Debian's$missing for the console tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing) >/dev/null 2>&1 || true
  fi
fi
if command -v chromium >/dev/null 2>&1; then
  export ZHISUAN_TEST_CHROMIUM="$(command -v chromium)"
  echo "== browser: $ZHISUAN_TEST_CHROMIUM"
elif [ "${CI:-}" = "true" ]; then
  echo "== browser: chromium could not be installed; CI must not skip the console tests" >&2; exit 1
else
  echo "== browser: chromium is not installed: the console tests will be SKIPPED" >&2
fi
