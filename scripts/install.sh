#!/usr/bin/env bash
# Install facelab into .venv from the lock file. Idempotent: does nothing when the lock is unchanged.
#
# requirements.lock pins every package (transitive ones included), so it installs with --no-deps:
# that keeps pip from re-resolving mediapipe's, ultralytics' and face-recognition's declared
# dependencies (see DESIGN.md). `torch===2.13.0` is the registry's standard build (CUDA inside,
# runs on CPU too), never a local CPU-only file.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
