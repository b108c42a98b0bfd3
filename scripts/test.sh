#!/usr/bin/env bash
# Runs every test of tend: Swift unit tests, then the end-to-end and SDK suites (pytest) against the
# real release binary. Installs what it needs (Debian packages when root, a Python venv with the
# official tensorlake SDK) so it works on a fresh Debian machine with the Swift toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need_pkgs=()
dpkg -s libsystemd-dev >/dev/null 2>&1 || need_pkgs+=(libsystemd-dev)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)   # promtool check metrics (tests/e2e/test_metrics.py)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2; exit 1
  fi
fi

VENV=${TEND_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import tensorlake, pytest, prometheus_client' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check tensorlake==0.5.161 pytest prometheus_client
fi

echo "== build (release, static Swift stdlib)"
swift build -c release --static-swift-stdlib --product tendd
swift build -c release --static-swift-stdlib --product tend

echo "== Swift unit tests"
swift test

echo "== end-to-end and SDK tests"
TENDD_BIN="$ROOT/.build/release/tendd" TEND_BIN="$ROOT/.build/release/tend" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e
echo "== systemd tests (private systemd --user manager)"; tests/systemd/run.sh "$VENV/bin/python" "$ROOT/.build/release/tendd"

# Hardening (README "Hardening and limits"): a bounded fuzz run, the suites under ASan, a soak under faults.
# Each step fails the script on failure. Skip them with TEND_SKIP_HARDENING=1 (e.g. for a quick local run).
if [ "${TEND_SKIP_HARDENING:-0}" != 1 ]; then
  echo "== fuzz (bounded: 15 s per target)"; fuzz/run.sh 15
  echo "== sanitizers (unit + e2e under ASan)"; scripts/sanitize.sh
  echo "== soak under faults (240 s)"
  SOAK_SECONDS=240 TENDD_BIN="$ROOT/.build/release/tendd" "$VENV/bin/python" tests/soak/soak.py
fi
