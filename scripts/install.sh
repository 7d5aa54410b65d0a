#!/usr/bin/env bash
# Install facelab from the lock file. Idempotent: does nothing when the lock is unchanged.
#
#   bash scripts/install.sh          what `make install` runs: a .venv in the checkout (made with $PYTHON)
#   VENV= PYTHON=/path/to/python bash scripts/install.sh
#                                    into that interpreter itself, no venv: docker/Dockerfile installs
#                                    into the rayproject/ray image's Python this way
#   ... install.sh --lock-only      only requirements.lock, not facelab itself (no stamp): the image's
#                                    dependency layer, built before the source is copied in
#
# requirements.lock pins every package (transitive ones included), so it installs with --no-deps:
# that keeps pip from re-resolving mediapipe's, ultralytics' and face-recognition's declared
# dependencies (see DESIGN.md). `torch===2.13.0` is the registry's standard build (CUDA inside,
# runs on CPU too), never a local CPU-only file. The lock needs Python 3.11 or 3.12 (pyproject.toml's
# requires-python).
set -euo pipefail
cd "$(dirname "$0")/.."
lock_only=false
[ "${1-}" = "--lock-only" ] && lock_only=true
PYTHON=${PYTHON:-python3}
VENV=${VENV-.venv}
if [ -n "$VENV" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  python="$VENV/bin/python"
  prefix="$VENV"
else
  python="$PYTHON"
  prefix=$("$python" -c 'import sys; print(sys.prefix)')
fi
if ! "$python" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
  echo "scripts/install.sh: $python is Python $("$python" -c 'import platform; print(platform.python_version())'); requirements.lock needs 3.11 or 3.12" >&2
  exit 1
fi
install_lock() {
  "$python" -m pip install -q --upgrade pip
  "$python" -m pip install -q --no-deps -r requirements.lock
}
if $lock_only; then
  install_lock
  exit 0
fi
stamp="$prefix/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  install_lock
  "$python" -m pip install -q --no-deps -e .
  rm -f "$prefix"/.installed-*
  touch "$stamp"
fi
