#!/usr/bin/env bash
# Builds tendd, starts it on 127.0.0.1:9501 with a fresh token, and shows it doing its job with curl:
# start a process, follow its output live (SSE), read its status. The daemon keeps running in the
# foreground afterwards (Ctrl-C stops it and every process it started).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
swift build -c release --static-swift-stdlib --product tendd >/dev/null
TOKEN_FILE=${TOKEN_FILE:-/tmp/tendd-token}
[ -s "$TOKEN_FILE" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE"; chmod 600 "$TOKEN_FILE"; }
PORT=${PORT:-9501}
.build/release/tendd --listen 127.0.0.1:$PORT --token-file "$TOKEN_FILE" &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null' EXIT
until curl -sf -H "Authorization: Bearer $(cat $TOKEN_FILE)" http://127.0.0.1:$PORT/api/v1/health >/dev/null; do sleep 0.1; done
T="Authorization: Bearer $(cat $TOKEN_FILE)"
echo "--- start a process"
curl -s -H "$T" -H 'Content-Type: application/json' \
  -d '{"command":"sh","args":["-c","for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2; exit 3"]}' \
  http://127.0.0.1:$PORT/api/v1/processes | tee /tmp/tendd-demo.json; echo
PID=$(sed -E 's/.*"pid":([0-9]+).*/\1/' /tmp/tendd-demo.json)
echo "--- follow its output live (SSE)"
curl -sN -H "$T" http://127.0.0.1:$PORT/api/v1/processes/$PID/output/follow
echo "--- its status"
curl -s -H "$T" http://127.0.0.1:$PORT/api/v1/processes/$PID; echo
echo "--- tendd is still running on 127.0.0.1:$PORT (token in $TOKEN_FILE); Ctrl-C to stop it"
wait $DAEMON
