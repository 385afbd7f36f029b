#!/usr/bin/env bash
# Verifies the three fan-out benchmark peers (seed_fastapi.py, node_ws.js, floor) against the
# common contract: for each peer and each fixture it starts the peer with --interval 0.2, waits for
# "READY <port>", runs check_peer.py (3 clients x 3 messages, content == fixture), holds
# N clients with many_clients.py, re-runs check_peer.py, then sends SIGTERM and requires exit 0.
# Every peer it starts is stopped by its own pid before the next one starts.
#
# Usage: bench/peers/verify.sh [CLIENTS]     (CLIENTS defaults to 1000)
# Needs: pip install -r bench/peers/requirements.txt; (cd bench/peers && npm ci); bench/peers/build.sh
# Env: PYTHON (default python3), FIXTURES (default /work/shared/fixtures), PORT (default 8101).
set -u
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
FIX=${FIXTURES:-/work/shared/fixtures}
PORT=${PORT:-8101}
CLIENTS=${1:-1000}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log=$(mktemp -d)
fail=0
pid=

cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -rf "$log"; }
trap cleanup EXIT

starts=0
start_peer() { # name snapshot interval; sets pid and out (a fresh file per start, never stale)
  starts=$((starts + 1))
  out=$log/out.$starts
  : >"$out"
  $(peer_cmd "$1") --port "$PORT" --snapshot "$2" --interval "$3" >"$out" 2>>"$log/err" &
  pid=$!
}

wait_ready() { # up to 30 s for this peer's READY line
  for _ in $(seq 300); do
    grep -qs "^READY $PORT$" "$out" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

peer_cmd() { # name fixture
  case $1 in
    seed)  echo "$PY $here/seed_fastapi.py" ;;
    node)  echo "node $here/node_ws.js" ;;
    floor) echo "$here/floor" ;;
  esac
}

for name in seed node floor; do
  for size in small large; do
    snap=$FIX/snapshot-$size.json
    # Large payloads: give the Python client room (it, not the peer, is the bottleneck).
    interval=0.2; hold_interval=0.2; [ "$size" = large ] && hold_interval=1.0
    echo "== $name / $size"
    : >"$log/err"
    start_peer "$name" "$snap" "$interval"
    if ! wait_ready; then
      echo "FAIL no 'READY $PORT' within 30s (alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no))"
      cat "$out" "$log/err"; fail=1; kill "$pid" 2>/dev/null; wait "$pid"; pid=; continue
    fi
    $PY "$here/check_peer.py" --port "$PORT" --snapshot "$snap" || fail=1
    $PY "$here/check_peer.py" --port "$PORT" --clients 5 --messages 10 || fail=1
    if [ "$hold_interval" != "$interval" ]; then  # restart slower for the many-clients hold
      kill -TERM "$pid"; wait "$pid"
      start_peer "$name" "$snap" "$hold_interval"
      wait_ready || { echo "FAIL no READY on restart"; fail=1; }
    fi
    $PY "$here/many_clients.py" --port "$PORT" --clients "$CLIENTS" --duration 5 || fail=1
    sleep 1
    $PY "$here/check_peer.py" --port "$PORT" || fail=1
    t0=${EPOCHREALTIME/./}
    kill -TERM "$pid"; wait "$pid"; rc=$?
    pid=
    echo "SIGTERM: exit $rc after $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
    [ "$rc" = 0 ] || fail=1
    grep -v '^$' "$log/err" | sed 's/^/  stderr: /'
  done
done
[ "$fail" = 0 ] && echo "ALL OK" || echo "SOME CHECKS FAILED"
exit "$fail"
