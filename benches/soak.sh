#!/usr/bin/env bash
# benches/soak.sh — a bounded soak run of tokengate (release build) with
# Redis and upstream restarts injected, counting every request's outcome.
#
# A counting client (benches/soak_client.py: CONNECTIONS keep-alive
# connections, continuous GETs with a team token) runs for DURATION seconds.
# Every INTERVAL seconds, alternately, Redis or the upstream is stopped
# (SIGTERM), kept down for DOWN seconds and started again on the same port
# (Redis with its append-only file, so tokens survive). At the end each
# request is classified:
#   answered         a 200
#   fail-closed      a 503 for a request in flight at some moment Redis was down
#   upstream-down    a 502 for a request in flight at some moment the upstream
#                    was down (one it was reading when SIGTERM stopped it too)
#   lost             no complete response after the request was written (must be 0)
#   wrongly refused  any other non-200: a 503 once Redis accepted connections
#                    again, a 502 once the upstream was back, anything else
#                    (must be 0)
# and a markdown summary is printed (and kept in the temp dir).
#
#   benches/soak.sh                          # 10 minutes
#   DURATION=60 INTERVAL=10 benches/soak.sh  # a short one
#
# Environment: DURATION (s, default 600), INTERVAL (s between restarts,
# default 30), DOWN (s each restart keeps the service down, default 2),
# CONNECTIONS (default 16). Everything listens on 127.0.0.1 on free ports,
# in a fresh temp dir; every process started here is stopped on exit; the
# client is bounded by `timeout`.
set -euo pipefail

DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-30}
DOWN=${DOWN:-2}
CONNECTIONS=${CONNECTIONS:-16}
BENCH_PATH=/api/v2/workspaces/ws-1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
TOKENGATE=$TARGET_DIR/release/tokengate
BENCH_UPSTREAM=$TARGET_DIR/release/bench-upstream

say() { echo "soak.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}
for var in DURATION INTERVAL DOWN CONNECTIONS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '${!var}'"
done
for tool in redis-server redis-cli curl python3 cargo timeout; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is not installed; 'scripts/install-deps.sh bench' installs the benchmark's tools"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-soak.XXXXXX")
mkdir -p "$WORK/redis"
REDIS_PID="" UPSTREAM_PID="" GATEWAY_PID="" CLIENT_PID=""
cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in $CLIENT_PID $GATEWAY_PID $UPSTREAM_PID $REDIS_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in $CLIENT_PID $GATEWAY_PID $UPSTREAM_PID $REDIS_PID; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ $status -ne 0 ]] && say "failed (exit $status); logs are in $WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

read -r REDIS_PORT UPSTREAM_PORT GATEWAY_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
wait_for() { # wait_for WHAT CMD...: up to 10 s
    local what=$1 i
    shift
    for ((i = 0; i < 200; i++)); do
        timeout 2 "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "$what did not come up"
}

start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
        --appendfsync always --dir "$WORK/redis" >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_for redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
}
start_upstream() {
    "$BENCH_UPSTREAM" --listen "127.0.0.1:$UPSTREAM_PORT" >>"$WORK/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    wait_for upstream curl -fsS "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH"
}
stop() { # stop PID: SIGTERM and wait
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

say "building release binaries"
(cd "$ROOT" && cargo build --release --bin tokengate --bin bench-upstream) || die "cargo build failed"
start_redis
start_upstream
CFG=$WORK/tokengate.yaml
cat >"$CFG" <<EOF
listen: 127.0.0.1:$GATEWAY_PORT
upstream: { url: http://127.0.0.1:$UPSTREAM_PORT }
store: { redis: { url: redis://127.0.0.1:$REDIS_PORT, timeout_ms: 250 } }
policy: { file: $ROOT/config/policy.yaml }
log: { level: warn }
EOF
"$TOKENGATE" org create --config "$CFG" acme >/dev/null
TEAM_ID=$("$TOKENGATE" team create --config "$CFG" --org acme dev |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
TOKEN=$("$TOKENGATE" token create --config "$CFG" --team "$TEAM_ID" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
"$TOKENGATE" serve --config "$CFG" >"$WORK/tokengate.log" 2>&1 &
GATEWAY_PID=$!
wait_for tokengate curl -fsS "http://127.0.0.1:$GATEWAY_PORT/_tokengate/ready"

say "soaking for ${DURATION}s with $CONNECTIONS connections; a restart every ${INTERVAL}s"
timeout -k 5 $((DURATION + 60)) python3 "$ROOT/benches/soak_client.py" 127.0.0.1 "$GATEWAY_PORT" \
    "$TOKEN" "$BENCH_PATH" "$DURATION" "$CONNECTIONS" >"$WORK/outcomes.jsonl" &
CLIENT_PID=$!

: >"$WORK/events.tsv"
END=$(($(date +%s) + DURATION))
turn=0
while (($(date +%s) + INTERVAL + DOWN < END)); do
    sleep "$INTERVAL"
    if ((turn % 2 == 0)); then what=redis; else what=upstream; fi
    turn=$((turn + 1))
    down=$(now)
    if [[ $what == redis ]]; then stop "$REDIS_PID"; else stop "$UPSTREAM_PID"; fi
    sleep "$DOWN"
    if [[ $what == redis ]]; then start_redis; else start_upstream; fi
    up=$(now)
    printf '%s\t%s\t%s\n' "$what" "$down" "$up" >>"$WORK/events.tsv"
    say "restarted $what (down ${DOWN}s)"
    kill -0 "$GATEWAY_PID" 2>/dev/null || die "tokengate died; see $WORK/tokengate.log"
done
wait "$CLIENT_PID" || die "the client failed"
CLIENT_PID=""

python3 - "$WORK/outcomes.jsonl" "$WORK/events.tsv" "$DURATION" "$CONNECTIONS" >"$WORK/summary.md" <<'PY'
import collections, json, sys

requests = [json.loads(line) for line in open(sys.argv[1])]
events = [line.split("\t") for line in open(sys.argv[2]).read().splitlines()]
windows = {"redis": [], "upstream": []}
for what, down, up in events:
    windows[what].append((float(down), float(up)))

def in_flight_while_down(what, start, end):
    # the request was under way at some moment the service was down
    return any(start < up and end >= down for down, up in windows[what])

counts = collections.Counter()
wrong = collections.Counter()
sent = 0
for r in requests:
    outcome, start, end = r["outcome"], r.get("start"), r.get("end")
    sent += r.get("count", 1)
    if outcome == "200":
        counts["answered"] += r["count"]
    elif outcome == "lost":
        counts["lost"] += 1
    elif outcome == "503" and in_flight_while_down("redis", start, end):
        counts["fail-closed (Redis down)"] += 1
    elif outcome in ("502", "504") and in_flight_while_down("upstream", start, end):
        counts["upstream down"] += 1
    else:
        counts["wrongly refused"] += 1
        wrong[outcome] += 1

print(f"soak: {sys.argv[3]} s, {sys.argv[4]} connections, "
      f"{len(windows['redis'])} Redis restarts, {len(windows['upstream'])} upstream restarts")
print()
print("| requests sent | answered (200) | fail-closed (Redis down) | 502 (upstream down) | lost | wrongly refused |")
print("|--:|--:|--:|--:|--:|--:|")
print(f"| {sent:,} | {counts['answered']:,} | {counts['fail-closed (Redis down)']:,} "
      f"| {counts['upstream down']:,} | {counts['lost']} | {counts['wrongly refused']} |")
if wrong:
    print()
    print("wrongly refused by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(wrong.items())))
PY
cat "$WORK/summary.md"
echo
echo "raw outcomes and logs: $WORK"
