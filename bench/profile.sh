#!/bin/bash
# Profiles tendd (perf record -g, daemon only) during one benchmark scenario and prints the top symbols.
#   bench/profile.sh sse80|sse1|sse4k|fan100|start|start8|start4000|info [perf.data]
# Uses $TENDD_BIN or .build-bench/release/tendd, and the tools built by bench/run.py (bench/.bin).
# Set TENDD_NO_CGROUP=1 to profile the fallback (no cgroup v2) ownership path; TENDD_FLAGS adds daemon flags
# (e.g. TENDD_FLAGS="--retention-dir none"; by default the disk tier is on, in a scratch directory, as in production).
set -euo pipefail
cd "$(dirname "$0")/.."
B=bench/.bin
TB=${TENDD_BIN:-.build-bench/release/tendd}
what=${1:?usage: bench/profile.sh sse80|sse1|sse4k|fan100|start|start8|start4000|info [perf.data]}
data=${2:-/tmp/tend-$what.perf.data}
[ -x $B/client ] || { echo "run python3 bench/run.py --quick --only raw first (builds bench/.bin)"; exit 1; }
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d); tok=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'); echo "$tok" > $tmp/token
$TB --listen 127.0.0.1:19521 --token-file $tmp/token --max-processes 5000 --max-connections 9000 \
  --retention-dir $tmp/retention ${TENDD_FLAGS:-} 2>$tmp/tendd.log &
TP=$!
HOLD=""
cleanup() {
  [ -n "$HOLD" ] && kill "$HOLD" 2>/dev/null || true
  if [ -s $tmp/hold.json ]; then
    python3 -c "import json,os,signal
for p in json.load(open('$tmp/hold.json'))['pids']:
    try: os.kill(p, signal.SIGKILL)
    except OSError: pass"
  fi
  kill $TP 2>/dev/null || true; wait $TP 2>/dev/null || true; rm -rf $tmp
}
trap cleanup EXIT
sleep 0.5
if [ $what = start4000 ]; then
  mkfifo $tmp/hold.in
  $B/client hold 19521 $tok 4000 1 '{"command":"/bin/sleep","args":["100000"]}' > $tmp/hold.json < $tmp/hold.in &
  HOLD=$!
  exec 9> $tmp/hold.in
  while ! grep -q pids $tmp/hold.json 2>/dev/null; do sleep 0.5; done
fi
perf record --no-inherit -F 4000 -g -o $data -p $TP >/dev/null 2>&1 &
PP=$!
sleep 0.3
lines() { echo "{\"command\":\"$PWD/$B/lines\",\"args\":[\"$1\",\"$2\",\"wait\"],\"stdin_mode\":\"pipe\"}"; }
case $what in
  sse80) for i in 1 2 3; do $B/client sse 19521 $tok 1 tendd "$(lines 80 2000000)"; done ;;
  sse1) for i in 1 2; do $B/client sse 19521 $tok 1 tendd "$(lines 1 2000000)"; done ;;
  sse4k) for i in 1 2 3; do $B/client sse 19521 $tok 1 tendd "$(lines 4096 50000)"; done ;;
  fan100) for i in 1 2; do $B/client sse 19521 $tok 100 tendd "$(lines 80 100000)"; done ;;
  start) $B/client start 19521 $tok 1 1000 '{"command":"/bin/true","stdin_mode":"pipe"}' ;;
  start8|start4000) $B/client start 19521 $tok 8 1000 '{"command":"/bin/true","stdin_mode":"pipe"}' ;;
  info) printf 'wrk.headers["Authorization"] = "Bearer %s"\n' $tok > $tmp/a.lua
        wrk -t1 -c50 -d5s -s $tmp/a.lua http://127.0.0.1:19521/api/v1/info | grep Requests ;;
  *) echo "unknown scenario $what"; exit 2 ;;
esac
kill -INT $PP; wait $PP 2>/dev/null || true
echo "== self time (tendd only)"
perf report -i $data --no-children --stdio -g none --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
echo "== inclusive"
perf report -i $data --children --stdio -g none --percent-limit 5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
echo "perf data: $data"
