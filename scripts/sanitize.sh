#!/usr/bin/env bash
# Runs the test suites under sanitizers (hardening; README "Hardening and limits"):
#   1. the Swift unit tests with AddressSanitizer (Swift and the C shim) + UBSan (the C shim);
#   2. the e2e pytest suite against an ASan (+UBSan C shim) build of tendd (and tend).
# Any sanitizer report fails the run: reports go to $ASAN_DIR (one file per reporting process) and
# the directory must be empty at the end. Separate scratch path: .build-asan.
#
#   scripts/sanitize.sh [pytest args...]      e.g. scripts/sanitize.sh -k exhaustion
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=${TEND_ASAN_SCRATCH:-$ROOT/.build-asan}
# swiftc has no -sanitize=undefined on Linux: UBSan covers the C shim, in trap mode (no runtime needed;
# undefined behaviour there stops the process with SIGILL, which fails the tests that hit it).
SAN=(--sanitize=address -Xcc -fsanitize=undefined -Xcc -fsanitize-trap=undefined)
ASAN_DIR=$(mktemp -d /tmp/tend-asan.XXXXXX)
export ASAN_OPTIONS="log_path=$ASAN_DIR/asan:detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="log_path=$ASAN_DIR/ubsan:print_stacktrace=1:halt_on_error=1"
VENV=${TEND_VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import tensorlake, pytest' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check tensorlake==0.5.161 pytest
fi

t0=$SECONDS
echo "== sanitize: build (debug, ${SAN[*]}, scratch $SCRATCH)"
for attempt in 1 2 3; do
  if swift build --scratch-path "$SCRATCH" "${SAN[@]}" --build-tests; then break; fi
  [ $attempt = 3 ] && exit 1
  echo "build failed (someone's edit in progress?); retrying in 30 s" >&2; sleep 30
done
swift build --scratch-path "$SCRATCH" "${SAN[@]}" --product tendd
swift build --scratch-path "$SCRATCH" "${SAN[@]}" --product tend
BIN=$(swift build --scratch-path "$SCRATCH" "${SAN[@]}" --show-bin-path)
echo "== sanitize: built in $((SECONDS - t0)) s"

t1=$SECONDS
echo "== sanitize: Swift unit tests under ASan+UBSan"
swift test --scratch-path "$SCRATCH" "${SAN[@]}" --skip-build
echo "== sanitize: unit tests took $((SECONDS - t1)) s"

t2=$SECONDS
echo "== sanitize: e2e suite against the ASan tendd ($BIN/tendd)"
status=0
TEND_ASAN=1 TENDD_BIN="$BIN/tendd" TEND_BIN="$BIN/tend" \
  "$PY" -m pytest -q -p no:cacheprovider tests/e2e "$@" || status=$?
echo "== sanitize: e2e took $((SECONDS - t2)) s"

# A report is a failure when it holds an error; the spawn path's clone(CLONE_VM|CLONE_VFORK) child runs
# on a private stack and makes ASan print a harmless "ignoring __asan_handle_no_return" warning.
reports=$(grep -lE 'ERROR: |SUMMARY: |runtime error' "$ASAN_DIR"/* 2>/dev/null || true)
warnings=$(ls "$ASAN_DIR" | wc -l)
if [ -n "$reports" ]; then
  echo "== sanitize: sanitizer reports:" >&2
  for f in $reports; do echo "--- $f" >&2; head -60 "$f" >&2; done
  status=1
else
  echo "== sanitize: no sanitizer error ($warnings warning-only report files, e.g. the vfork-stack note)"
  rm -rf "$ASAN_DIR"
fi
echo "== sanitize: total $((SECONDS - t0)) s, status $status"
exit $status
