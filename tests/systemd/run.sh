#!/usr/bin/env bash
# Runs tests/systemd/test_systemd.py: tendd under a private, real `systemd --user` manager (inside its own
# mount namespace, so the host is untouched). Usage: run.sh PYTHON TENDD_BIN
# Skips (exit 0, with a message) only when this machine cannot run such a manager at all.
set -euo pipefail
PY=${1:?python}; BIN=${2:?tendd binary}
cd "$(dirname "$0")"
SYSTEMD=${TEND_SYSTEMD:-/lib/systemd/systemd}
why=""
[ -x "$SYSTEMD" ] || why="no $SYSTEMD"
command -v systemctl >/dev/null 2>&1 || why="${why:+$why, }no systemctl"
command -v unshare >/dev/null 2>&1 || why="${why:+$why, }no unshare"
[ "$(id -u)" = 0 ] || why="${why:+$why, }not root (a private mount namespace needs it)"
if [ -z "$why" ] && ! unshare -m true 2>/dev/null; then why="unshare -m is not permitted here"; fi
if [ -n "$why" ]; then
  echo "SKIP systemd tests: cannot run a private systemd --user manager ($why)"
  exit 0
fi
# Last resort against a hang: SIGINT lets pytest tear the manager down.
TENDD_BIN="$BIN" exec timeout -s INT -k 30 420 "$PY" -m pytest -q -p no:cacheprovider -s test_systemd.py test_crash.py test_chaos.py
