#!/usr/bin/env bash
# Headless Chromium for the portal's browser test (tests/model/test_portal_browser.py): Debian's
# `chromium` and `chromium-driver` (Selenium's driver), installed with apt-get when missing. Never
# downloads a browser any other way and never fails the build: when it cannot install (not root and
# no sudo, no apt-get, no network) it says why and the browser test skips.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
why=""
if ! command -v apt-get >/dev/null 2>&1; then
  why="no apt-get (not Debian/Ubuntu)"
else
  run=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      run="sudo -n"
    else
      why="not root and no password-less sudo"
    fi
  fi
  if [ -z "$why" ]; then
    echo "scripts/install_browser.sh: installing chromium and chromium-driver with apt-get (for the portal's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    log="${TMPDIR:-/tmp}/install_browser.log"
    $run apt-get -qq update >"$log" 2>&1  # a stale list may still install: its failure is not fatal
    if ! $run apt-get -qq install -y --no-install-recommends chromium chromium-driver >>"$log" 2>&1; then
      why="apt-get install failed (see $log)"
    fi
  fi
fi
if [ -n "$why" ]; then
  echo "scripts/install_browser.sh: chromium/chromedriver not installed: $why; the portal's browser test will skip" >&2
fi
exit 0
