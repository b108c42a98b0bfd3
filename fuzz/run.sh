#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + fuzzer coverage instrumentation, release optimisation) and runs each one
# for a bounded time. Fails on the first crash, leak, timeout or failed property; the crashing input is
# kept in fuzz/artifacts/ (turn it into a regression test under Tests/ and fix the bug).
#
#   fuzz/run.sh [seconds-per-target] [target...]     default: 15 s, every target
#
# The committed seed corpus (fuzz/corpus/<target>/) is read-only here: new inputs go to a scratch corpus
# in fuzz/.work/<target>/ that persists across runs (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-15}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(FuzzHTTPHead FuzzChunked FuzzJSON FuzzRequests FuzzResume FuzzJournal FuzzWebSocket)

# One -sanitize=fuzzer,address: swiftc keeps only the LAST -sanitize flag, so SwiftPM's separate
# --sanitize=fuzzer --sanitize=address would silently drop the coverage instrumentation. --sanitize=fuzzer
# stays (it tells SwiftPM the executables have no main); the -Xswiftc flag comes last and wins.
FLAGS=(-c release --scratch-path .build --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)
echo "== fuzz: building (swift build ${FLAGS[*]})"
for t in "${TARGETS[@]}"; do
  ok=0
  for attempt in 1 2 3; do
    if swift build "${FLAGS[@]}" --product "$t" 2>&1 | grep -E "error|Compiling|Build" | tail -3; [ "${PIPESTATUS[0]}" = 0 ]; then ok=1; break; fi
    echo "fuzz: build of $t failed (an edit in progress?); retrying in 20 s" >&2; sleep 20
  done
  [ $ok = 1 ] || { echo "fuzz: build of $t failed" >&2; exit 1; }
done
BIN=$(swift build "${FLAGS[@]}" --show-bin-path)

mkdir -p artifacts .work
status=0
printf '%-14s %10s %8s %8s %7s %s\n' target execs secs corpus cov result > .work/summary.txt
for t in "${TARGETS[@]}"; do
  mkdir -p ".work/$t"
  log=".work/$t.log"
  echo "== fuzz: $t for ${SECS}s"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    "$BIN/$t" -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t-" ".work/$t" "corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  units=$(ls ".work/$t" | wc -l)
  if [ $rc = 0 ]; then res=ok; else res="FAILED(rc=$rc)"; status=1; fi
  printf '%-14s %10s %8s %8s %7s %s\n' "$t" "$execs" "$SECS" "$units" "$cov" "$res" | tee -a .work/summary.txt
  if [ $rc != 0 ]; then
    grep -E 'Fatal error|ERROR: |SUMMARY|precondition|artifact' "$log" | head -20 >&2 || true
  fi
done
echo "== fuzz summary"; cat .work/summary.txt
exit $status
