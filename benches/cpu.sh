#!/usr/bin/env bash
# benches/cpu.sh — CPU cost per request of the gateway, a number that a busy
# machine does not move much (unlike requests/s).
#
# Starts a private redis-server, bench-upstream and the release tokengate
# (like benches/load.sh: one valid team token, log level info, access lines
# to a file), warms up, then drives `wrk -t1 -c$CONNECTIONS -d$DURATION`
# (GET /api/v2/workspaces/ws-1) and divides by the requests wrk saw answered:
#
#   MODE=clock     (default) the gateway's CPU time from `perf stat -e
#                  task-clock` on its pid (and from /proc utime+stime):
#                  CPU µs per request.
#   MODE=callgrind the gateway runs under `valgrind --tool=callgrind`; the
#                  counters are zeroed after the warm-up and dumped after the
#                  load: user-space instructions per request (exact, no
#                  hardware counters needed: virtual machines often have
#                  none). The dump stays in the temp dir for
#                  `callgrind_annotate --inclusive=yes` / `--inclusive=no`.
#   MODE=record    `perf record -g` (cpu-clock) of the gateway during the
#                  load; the data stays in the temp dir for `perf report`.
#   MODE=syscalls  the gateway's system calls per request during the load
#                  (`perf stat` on the syscalls tracepoints: recvfrom,
#                  sendto, epoll_wait, write, writev, read), and how many
#                  recvfrom calls found nothing (EAGAIN).
#
# FORGED=wrong-secret|unknown-id|mixed drives wrk with shape-valid tokens
# that must fail instead of the valid one (`bench-tokens forge`, 1,000 of
# them, rotated per request): the team token's id with wrong secrets, ids no
# credential has, or both alternately (benches/load.sh's flood). Every
# answer must then be 401 (any other status aborts the run), and the
# figures are per refused request.
#
# Environment: DURATION (10), CONNECTIONS (32), WORKERS (config default),
# POLICY (the policy file; default config/policy.yaml, which checks team access),
# TOKENGATE (the binary; default: the release build),
# REPEAT (1: clock mode runs wrk REPEAT times and prints each figure),
# KEEP=1 keeps the temp dir (always kept for callgrind and record).
# Needs redis-server, redis-cli, wrk, curl, perf, valgrind (callgrind).
set -euo pipefail

MODE=${MODE:-clock}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-}
REPEAT=${REPEAT:-1}
KEEP=${KEEP:-0}
FORGED=${FORGED:-}
FORGED_TOKENS=1000
BENCH_PATH=/api/v2/workspaces/ws-1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
TOKENGATE=${TOKENGATE:-$TARGET_DIR/release/tokengate}
BENCH_UPSTREAM=$TARGET_DIR/release/bench-upstream
BENCH_TOKENS=$TARGET_DIR/release/bench-tokens

say() { echo "cpu.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}
case $MODE in clock | callgrind | record | syscalls) ;; *) die "MODE must be clock, callgrind, record or syscalls" ;; esac
case $FORGED in "" | wrong-secret | unknown-id | mixed) ;; *) die "FORGED must be wrong-secret, unknown-id or mixed" ;; esac
[[ -x $TOKENGATE && -x $BENCH_UPSTREAM && (-z $FORGED || -x $BENCH_TOKENS) ]] ||
    die "build first: cargo build --release --bin tokengate --bin bench-upstream --bin bench-tokens"

WORK=$(mktemp -d /tmp/tokengate-cpu.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $KEEP == 1 || $MODE != clock ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() {
    for _ in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "timed out waiting for: $*"
}

REDIS_PORT=$(free_port)
UPSTREAM_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --save "" --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 \
    --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
"$BENCH_UPSTREAM" --listen "127.0.0.1:$UPSTREAM_PORT" >"$WORK/bench-upstream.log" 2>&1 &
PIDS+=($!)
wait_for curl -fsS "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH"

CFG=$WORK/tokengate.yaml
cat >"$CFG" <<EOF
listen: 127.0.0.1:$GATEWAY_PORT
upstream:
  url: http://127.0.0.1:$UPSTREAM_PORT
store:
  redis:
    url: redis://127.0.0.1:$REDIS_PORT
    timeout_ms: 250
policy:
  file: ${POLICY:-$ROOT/config/policy.yaml}
log:
  level: info
EOF
[[ -n $WORKERS ]] && echo "workers: $WORKERS" >>"$CFG"
if [[ $MODE == callgrind ]]; then
    # Under valgrind everything is ~50x slower: give Redis reads room.
    sed -i 's/timeout_ms: 250/timeout_ms: 5000/' "$CFG"
fi

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
"$TOKENGATE" org create --config "$CFG" acme >/dev/null 2>>"$WORK/cli.log"
TEAM_ID=$("$TOKENGATE" team create --config "$CFG" --org acme dev 2>>"$WORK/cli.log" | json_field id)
TOKEN=$("$TOKENGATE" token create --config "$CFG" --team "$TEAM_ID" 2>>"$WORK/cli.log" | json_field token)
# The default policy checks the team's access to ws-1 (`requires: runs:read`).
"$TOKENGATE" access set --config "$CFG" --team "$TEAM_ID" --workspace ws-1 --access read \
    >/dev/null 2>>"$WORK/cli.log"

WRK_ARGS=(-H "Authorization: Bearer $TOKEN")
if [[ -n $FORGED ]]; then
    # Forged tokens, one per request in turn; the script counts every
    # answer that is not 401, and wrk prints that count at the end.
    mkdir -m 700 "$WORK/secrets"
    printf '%s\n' "$TOKEN" |
        timeout 60 "$BENCH_TOKENS" forge --kind "$FORGED" --count "$FORGED_TOKENS" \
            --out "$WORK/secrets/forged" >/dev/null 2>>"$WORK/cli.log" ||
        die "bench-tokens forge failed; see $WORK/cli.log"
    cat >"$WORK/forged.lua" <<EOF
local tokens = {}
for line in io.lines("$WORK/secrets/forged") do
  if line ~= "" then tokens[#tokens + 1] = line end
end
assert(#tokens > 0, "no forged tokens")
local counter = 0
not_401 = 0
local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1] })
end
response = function(status, headers, body)
  if status ~= 401 then not_401 = not_401 + 1 end
end
done = function(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do n = n + thread:get("not_401") end
  io.write(string.format("answers not 401: %d\n", n))
end
EOF
    WRK_ARGS=(-s "$WORK/forged.lua")
fi

case $MODE in
callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$TOKENGATE" serve --config "$CFG" >"$WORK/tokengate.out" 2>"$WORK/tokengate.log" &
    ;;
*)
    "$TOKENGATE" serve --config "$CFG" >"$WORK/tokengate.out" 2>"$WORK/tokengate.log" &
    ;;
esac
GW=$!
PIDS+=($GW)
wait_for curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"

run_wrk() { # SECONDS OUT
    timeout $(($1 + 60)) wrk -t1 -c"$CONNECTIONS" -d"$1"s --timeout 10s \
        "${WRK_ARGS[@]}" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH" >"$2"
    if [[ -n $FORGED ]]; then
        grep -q "^answers not 401: 0$" "$2" || die "answers other than 401: $(cat "$2")"
        grep -q "Socket errors" "$2" && die "socket errors: $(cat "$2")"
    else
        grep -q "Non-2xx" "$2" && die "non-2xx answers: $(cat "$2")"
    fi
    awk '/requests in/ {print $1}' "$2"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GW/stat"; }

say "warming up"
run_wrk 2 "$WORK/warmup.txt" >/dev/null

case $MODE in
clock)
    TICK=$(getconf CLK_TCK)
    for i in $(seq 1 "$REPEAT"); do
        before=$(cpu_ticks)
        perf stat -e task-clock -x, -o "$WORK/perf-stat-$i.csv" -p "$GW" &
        STAT=$!
        sleep 0.2
        requests=$(run_wrk "$DURATION" "$WORK/wrk-$i.txt")
        kill -INT $STAT
        wait $STAT || true
        after=$(cpu_ticks)
        task_ms=$(awk -F, '/task-clock/ {print $1}' "$WORK/perf-stat-$i.csv")
        rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$i.txt")
        python3 - "$requests" "$task_ms" "$before" "$after" "$TICK" "$rps" <<'EOF'
import sys
req, task_ms, before, after, tick, rps = sys.argv[1:]
req = int(req)
print(f"requests={req} req/s={rps} task-clock µs/req={float(task_ms) * 1000 / req:.2f} "
      f"/proc µs/req={(int(after) - int(before)) * 1e6 / int(tick) / req:.2f}")
EOF
    done
    ;;
callgrind)
    callgrind_control -z "$GW" >/dev/null
    requests=$(run_wrk "$DURATION" "$WORK/wrk.txt")
    callgrind_control -d "$GW" >/dev/null
    sleep 1
    # The dump (part 1) holds the counts since the zeroing, all threads.
    dump=$(ls "$WORK"/callgrind.out.*.1 | head -1)
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    echo "requests=$requests Ir=$total Ir/req=$((total / requests))"
    say "profile: callgrind_annotate --inclusive=no $dump"
    ;;
syscalls)
    calls=recvfrom,sendto,epoll_wait,write,writev,read
    events=$(tr , '\n' <<<"$calls" | sed 's/^/syscalls:sys_enter_/' | paste -sd,)
    perf stat -x, -o "$WORK/syscalls.csv" -p "$GW" \
        -e "$events" -e 'syscalls:sys_exit_recvfrom' --filter 'ret == -11' &
    STAT=$!
    sleep 0.2
    requests=$(run_wrk "$DURATION" "$WORK/wrk.txt")
    kill -INT $STAT
    wait $STAT || true
    python3 - "$requests" "$WORK/syscalls.csv" <<'EOF'
import sys
requests = int(sys.argv[1])
parts = [f"requests={requests}"]
for line in open(sys.argv[2]):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[2].startswith("syscalls:"):
        name = fields[2].split(":")[1].replace("sys_enter_", "")
        if name == "sys_exit_recvfrom":
            name = "recvfrom_eagain"
        parts.append(f"{name}/req={int(fields[0]) / requests:.2f}")
print(" ".join(parts))
EOF
    ;;
record)
    perf record -g -e cpu-clock -o "$WORK/perf.data" -p "$GW" >/dev/null 2>&1 &
    REC=$!
    sleep 0.2
    requests=$(run_wrk "$DURATION" "$WORK/wrk.txt")
    kill -INT $REC
    wait $REC || true
    echo "requests=$requests perf data: $WORK/perf.data"
    ;;
esac
