# Sourced by scripts/up and scripts/test: makes sure uv and the locked virtual environment exist.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  # pip --user puts uv in ~/.local/bin, which a fresh login shell may not have on PATH: this script
  # adds it for itself, and the README's commands run .venv/bin/zhisuan, which needs no uv at all.
  if [ ! -x "$HOME/.local/bin/uv" ]; then
    echo "installing uv (the Python package manager that reads uv.lock)…" >&2
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  fi
  export PATH="$HOME/.local/bin:$PATH"
fi
export UV_PYTHON_DOWNLOADS=never
