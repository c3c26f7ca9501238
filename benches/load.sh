#!/usr/bin/env bash
# benches/load.sh — end-to-end load benchmark for tokengate.
#
# What it measures: requests/s and latency (p50, p99) of one local HTTP/1.1
# upstream (`bench-upstream`, answers every request 200 `{"ok":true}`) reached
#   1. directly                         ("upstream": the ceiling),
#   2. through an nginx pass-through    ("nginx": the baseline, no auth;
#      proxy, 2 workers, upstream        skipped when nginx is not installed),
#      keepalive 64
#   3. through tokengate with a valid   ("tokengate": the real hot path: token
#      team token, no access checks      shape check, one Redis lookup, cached
#      (the default policy without its   verify, policy, forward),
#      `requires:` rules)
#   4. through tokengate with access    ("tokengate-access": the same plus the
#      checks on, warm cache (the        access check of the default policy:
#      default policy; the team has      the workspace's organization from the
#      read access to ws-1)              resolver's cache, the team's access
#                                        from one more Redis read; WITH_ACCESS=0
#                                        leaves it out),
#   5. optional, WITH_ORG_DENY=1:       ("tokengate-org-deny": an organization
#      tokengate rejecting an apply      token POSTing a run apply, which policy
#                                        denies with 403; nothing is forwarded),
# all with `wrk -t1 -c$CONNECTIONS --latency` on GET /api/v2/workspaces/ws-1.
# wrk uses one thread, so on a 2-core machine it takes one core and the proxy
# plus upstream share the other; compare numbers only within one run. Each
# target is warmed for 2 s, then the set is measured ROUNDS times,
# interleaved (upstream, nginx, tokengate, upstream, ...), so noise hits every
# target alike. The summary is a markdown table with each round's requests/s,
# the medians, the median over rounds of each round's ratio to nginx, and the
# CPU time each target's own processes (and Redis) spent per request served,
# read from /proc: steadier than requests/s on a noisy machine.
#
# How to run (from anywhere; needs redis-server, wrk, curl, python3, cargo,
# and optionally nginx — `scripts/install-deps.sh bench` installs them):
#
#   benches/load.sh
#   DURATION=30 ROUNDS=5 CONNECTIONS=64 benches/load.sh
#   WITH_ORG_DENY=1 benches/load.sh
#
# Environment:
#   DURATION       seconds per measured wrk run (default 10)
#   ROUNDS         how many interleaved rounds (default 3)
#   CONNECTIONS    wrk connections (default 32)
#   WITH_ORG_DENY  1 adds the "tokengate-org-deny" target (default off)
#   WITH_ACCESS    0 leaves out the "tokengate-access" target (default on)
#   LOG_LEVEL      tokengate log level (default info: one access line per request)
#   MANY_TOKENS    N > 1 adds "tokengate-many-tokens": requests rotate over N
#                  teams' tokens, so concurrent requests rarely share a token
#                  (the single-token target lets them share credential reads)
#   WORKERS        tokengate's `workers` (default: the config default, one per CPU)
#   BASELINE_TOKENGATE  path of another tokengate binary (e.g. a build of the
#                  previous commit) to run beside this one, same config and
#                  Redis, as target "tokengate-baseline": A/B in one run
#
# Everything listens on 127.0.0.1 on free ports and runs in a fresh temp dir
# (printed at the end, with the raw wrk outputs and every process's log); all
# processes started here are stopped on exit. Every wrk run is bounded by
# `timeout`.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WITH_ORG_DENY=${WITH_ORG_DENY:-0}
WITH_ACCESS=${WITH_ACCESS:-1}
MANY_TOKENS=${MANY_TOKENS:-0}  # N > 1 adds "tokengate-many-tokens": N teams' tokens, rotated per request
LOG_LEVEL=${LOG_LEVEL:-info}  # tokengate log level; info writes one access line per request
WORKERS=${WORKERS:-}
BASELINE_TOKENGATE=${BASELINE_TOKENGATE:-}
WARMUP=2
BENCH_PATH=/api/v2/workspaces/ws-1
DENY_PATH=/api/v2/runs/run-1/actions/apply

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
TOKENGATE=$TARGET_DIR/release/tokengate
BENCH_UPSTREAM=$TARGET_DIR/release/bench-upstream
POLICY_FILE=$ROOT/config/policy.yaml

say() { echo "load.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

for var in DURATION ROUNDS CONNECTIONS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '${!var}'"
done
[[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"
[[ -z $BASELINE_TOKENGATE || -x $BASELINE_TOKENGATE ]] ||
    die "BASELINE_TOKENGATE=$BASELINE_TOKENGATE is not an executable file"

# ---------------------------------------------------------------- tools ----
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" # nginx lives in sbin
if ! command -v wrk >/dev/null 2>&1; then
    say "wrk is not installed; 'scripts/install-deps.sh bench' (as root) installs it"
    exit 1
fi
for tool in redis-server redis-cli curl python3 cargo timeout; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is not installed; 'scripts/install-deps.sh bench' installs the benchmark's tools"
done
HAVE_NGINX=0
if command -v nginx >/dev/null 2>&1; then HAVE_NGINX=1; fi
[[ -f $POLICY_FILE ]] || die "policy file $POLICY_FILE not found"

# ------------------------------------------------------ temp dir, cleanup ----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-load.XXXXXX")
# nginx workers may run as an unprivileged user when started by root: let them
# reach their files. Nothing secret is written here.
chmod 755 "$WORK"
mkdir -p "$WORK/wrk" "$WORK/redis" "$WORK/nginx"
PIDS=()
WRK_PID=""

cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        # Give each process up to 5 s to exit (nginx master stops its workers).
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        say "failed (exit $status); logs and raw outputs are in $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Print N free TCP ports on 127.0.0.1, one per line. All sockets are held open
# together so the N ports differ.
free_ports() {
    python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
' "$1"
}

# Print one field of the JSON object on stdin.
json_field() {
    python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# wait_until DESCRIPTION PID LOG CMD...: retry CMD (each try bounded to 5 s)
# for up to 300 tries while PID is alive; on failure show the end of LOG.
wait_until() {
    local what=$1 pid=$2 logfile=$3 i
    shift 3
    for ((i = 0; i < 300; i++)); do
        if timeout 5 "$@" >/dev/null 2>&1; then
            say "$what is ready"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$what exited during start-up; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    say "$what not ready in time; last lines of $logfile:"
    tail -n 30 "$logfile" >&2 || true
    exit 1
}

# --------------------------------------------------------------- build ----
say "building release binaries (tokengate, bench-upstream)"
(cd "$ROOT" && cargo build --release --bin tokengate --bin bench-upstream) ||
    die "cargo build failed"
[[ -x $TOKENGATE && -x $BENCH_UPSTREAM ]] ||
    die "expected $TOKENGATE and $BENCH_UPSTREAM after the build (is CARGO_TARGET_DIR right?)"

{
    read -r REDIS_PORT
    read -r UPSTREAM_PORT
    read -r NGINX_PORT
    read -r GATEWAY_PORT
    read -r BASELINE_PORT
    read -r ACCESS_PORT
} < <(free_ports 6)

# --------------------------------------------------------------- redis ----
redis-server --save "" --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 \
    --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=($!)
wait_until "redis-server on 127.0.0.1:$REDIS_PORT" "$!" "$WORK/redis.log" \
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping

# ------------------------------------------------------------ upstream ----
"$BENCH_UPSTREAM" --listen "127.0.0.1:$UPSTREAM_PORT" >"$WORK/bench-upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=($!)
wait_until "bench-upstream on 127.0.0.1:$UPSTREAM_PORT" "$!" "$WORK/bench-upstream.log" \
    curl -fsS "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH"

# --------------------------------------------------------------- nginx ----
if [[ $HAVE_NGINX -eq 1 ]]; then
    NGX=$WORK/nginx
    cat >"$NGX/nginx.conf" <<EOF
# Pass-through baseline generated by benches/load.sh.
worker_processes 2;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $NGX/client_body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;

    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    # -e: the start-up error log also goes to the temp dir, not /var/log.
    nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" -t >"$NGX/config-test.log" 2>&1 ||
        { cat "$NGX/config-test.log" >&2; die "nginx rejected the generated config"; }
    nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=($!)
    wait_until "nginx on 127.0.0.1:$NGINX_PORT" "$!" "$NGX/error.log" \
        curl -fsS "http://127.0.0.1:$NGINX_PORT$BENCH_PATH"
else
    say "nginx not found: skipping the nginx baseline ('scripts/install-deps.sh bench' installs it)"
fi

# ----------------------------------------------------------- tokengate ----
# "tokengate" runs the default policy without its `requires:` rules (no
# access checks: the path before team access existed); "tokengate-access"
# runs the default policy itself. Same binary, same Redis, same upstream.
PLAIN_POLICY=$WORK/policy-plain.yaml
python3 - "$POLICY_FILE" "$PLAIN_POLICY" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
head, rules = text.split("\nrules:\n", 1)
blocks = re.split(r"(?m)^(?=  - id: )", rules)
kept = [b for b in blocks if not re.search(r"(?m)^    requires:", b)]
open(sys.argv[2], "w").write(head + "\nrules:\n" + "".join(kept))
PY
# write_config FILE PORT POLICY
write_config() {
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
upstream:
  url: http://127.0.0.1:$UPSTREAM_PORT
store:
  redis:
    url: redis://127.0.0.1:$REDIS_PORT
    timeout_ms: 250
policy:
  file: $3
log:
  level: $LOG_LEVEL
EOF
    if [[ -n $WORKERS ]]; then echo "workers: $WORKERS" >>"$1"; fi
}
CFG=$WORK/tokengate.yaml
write_config "$CFG" "$GATEWAY_PORT" "$PLAIN_POLICY"
ACCESS_CFG=$WORK/tokengate-access.yaml
write_config "$ACCESS_CFG" "$ACCESS_PORT" "$POLICY_FILE"

# cli ARGS...: run a tokengate CLI command, keep its output in the temp dir,
# print its stdout (one JSON object).
cli() {
    local out
    if ! out=$(timeout 60 "$TOKENGATE" "$@" 2>>"$WORK/cli.log"); then
        say "'tokengate $*' failed; see $WORK/cli.log:"
        tail -n 20 "$WORK/cli.log" >&2 || true
        exit 1
    fi
    printf '%s\n' "$out"
}

cli org create --config "$CFG" acme >"$WORK/org.json"
cli team create --config "$CFG" --org acme dev >"$WORK/team.json"
TEAM_ID=$(json_field id <"$WORK/team.json")
# The token itself is kept out of files and logs; only its id is printed.
TOKEN_JSON=$(cli token create --config "$CFG" --team "$TEAM_ID")
TOKEN=$(json_field token <<<"$TOKEN_JSON")
say "created org acme, team $TEAM_ID, team token $(json_field id <<<"$TOKEN_JSON")"
if [[ $WITH_ACCESS == 1 ]]; then
    # The workspace is checked upstream (bench-upstream answers the lookup).
    cli access set --config "$ACCESS_CFG" --team "$TEAM_ID" --workspace ws-1 --access read \
        >"$WORK/access.json"
    say "gave team $TEAM_ID read access to ws-1"
fi
if [[ $WITH_ORG_DENY == 1 ]]; then
    ORG_TOKEN_JSON=$(cli token create --config "$CFG" --org acme)
    ORG_TOKEN=$(json_field token <<<"$ORG_TOKEN_JSON")
    say "created organization token $(json_field id <<<"$ORG_TOKEN_JSON")"
    cat >"$WORK/org-deny.lua" <<EOF
wrk.method = "POST"
wrk.body = ""
wrk.headers["Content-Type"] = "application/vnd.api+json"
EOF
fi

if [[ $MANY_TOKENS -gt 1 ]]; then
    # A wrk script that sends each request with the next of N team tokens.
    # It holds tokens: readable by this user only, in the temp dir.
    (
        umask 077
        printf 'tokens = {\n' >"$WORK/many-tokens.lua"
        for i in $(seq 1 "$MANY_TOKENS"); do
            team_id=$(cli team create --config "$CFG" --org acme "many$i" | json_field id)
            token=$(cli token create --config "$CFG" --team "$team_id" | json_field token)
            printf '  "%s",\n' "$token" >>"$WORK/many-tokens.lua"
        done
        cat >>"$WORK/many-tokens.lua" <<'LUA'
}
counter = 0
request = function()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end
LUA
    )
    say "created $MANY_TOKENS more teams and tokens for tokengate-many-tokens"
fi

"$TOKENGATE" serve --config "$CFG" >"$WORK/tokengate.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
wait_until "tokengate on 127.0.0.1:$GATEWAY_PORT" "$GATEWAY_PID" "$WORK/tokengate.log" \
    curl -fsS "http://127.0.0.1:$GATEWAY_PORT/_tokengate/ready"
if [[ $WITH_ACCESS == 1 ]]; then
    "$TOKENGATE" serve --config "$ACCESS_CFG" >"$WORK/tokengate-access.log" 2>&1 &
    ACCESS_PID=$!
    PIDS+=("$ACCESS_PID")
    wait_until "tokengate-access on 127.0.0.1:$ACCESS_PORT" "$ACCESS_PID" "$WORK/tokengate-access.log" \
        curl -fsS "http://127.0.0.1:$ACCESS_PORT/_tokengate/ready"
fi
if [[ -n $BASELINE_TOKENGATE ]]; then
    # The same config on its own port; `workers` only if this binary knows it.
    sed "s/^listen: .*/listen: 127.0.0.1:$BASELINE_PORT/" "$CFG" >"$WORK/baseline.yaml"
    if ! "$BASELINE_TOKENGATE" check --config "$WORK/baseline.yaml" >/dev/null 2>&1; then
        sed -i '/^workers:/d' "$WORK/baseline.yaml"
    fi
    "$BASELINE_TOKENGATE" serve --config "$WORK/baseline.yaml" >"$WORK/baseline.log" 2>&1 &
    BASELINE_PID=$!
    PIDS+=("$BASELINE_PID")
    wait_until "tokengate-baseline on 127.0.0.1:$BASELINE_PORT" "$BASELINE_PID" "$WORK/baseline.log" \
        curl -fsS "http://127.0.0.1:$BASELINE_PORT/_tokengate/ready"
fi

# Benchmarking error responses by accident would be meaningless: check that
# each tokengate target answers what it should before loading it.
# expect_status WHAT CODE CURL_ARGS...
expect_status() {
    local what=$1 want=$2 got
    shift 2
    got=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$@") || got="no answer"
    [[ $got == "$want" ]] ||
        die "sanity check: $what should get HTTP $want from tokengate, got $got (see $WORK/tokengate.log)"
    say "sanity check: $what -> HTTP $got"
}
expect_status "GET $BENCH_PATH with the team token" 200 \
    -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"
if [[ $WITH_ACCESS == 1 ]]; then
    expect_status "GET $BENCH_PATH with the team token (access checks on)" 200 \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ACCESS_PORT$BENCH_PATH"
    expect_status "GET /api/v2/workspaces/ws-2 with the team token (no access: hidden)" 404 \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ACCESS_PORT/api/v2/workspaces/ws-2"
fi
if [[ -n $BASELINE_TOKENGATE ]]; then
    expect_status "GET $BENCH_PATH with the team token (baseline)" 200 \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$BASELINE_PORT$BENCH_PATH"
fi
if [[ $WITH_ORG_DENY == 1 ]]; then
    expect_status "POST $DENY_PATH with the organization token" 403 \
        -X POST -H "Content-Type: application/vnd.api+json" \
        -H "Authorization: Bearer $ORG_TOKEN" "http://127.0.0.1:$GATEWAY_PORT$DENY_PATH"
fi

# ---------------------------------------------------------------- load ----
TARGETS=(upstream)
[[ $HAVE_NGINX -eq 1 ]] && TARGETS+=(nginx)
TARGETS+=(tokengate)
[[ $WITH_ACCESS == 1 ]] && TARGETS+=(tokengate-access)
[[ -n $BASELINE_TOKENGATE ]] && TARGETS+=(tokengate-baseline)
[[ $MANY_TOKENS -gt 1 ]] && TARGETS+=(tokengate-many-tokens)
[[ $WITH_ORG_DENY == 1 ]] && TARGETS+=(tokengate-org-deny)

# cpu_ticks PID...: CPU time (user + system, in clock ticks) the processes
# and their children threads have used so far.
cpu_ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || t=0
        total=$((total + t))
    done
    echo "$total"
}

# The processes that do a target's work (nginx: its workers).
target_pids() {
    case "$1" in
        upstream) echo "$UPSTREAM_PID" ;;
        nginx) pgrep -P "$NGINX_PID" | tr '\n' ' ' ;;
        tokengate-baseline) echo "$BASELINE_PID" ;;
        tokengate-access) echo "$ACCESS_PID" ;;
        *) echo "$GATEWAY_PID" ;;
    esac
}

# run_wrk TARGET SECONDS OUTFILE: one bounded wrk run against TARGET; the
# CPU ticks used meanwhile by the target's processes, by Redis and by the
# upstream go to OUTFILE with .cpu instead of .txt.
run_wrk() {
    local target=$1 secs=$2 out=$3 args
    args=(-t1 "-c$CONNECTIONS" "-d${secs}s" --latency)
    case "$target" in
        upstream) args+=("http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH") ;;
        nginx) args+=("http://127.0.0.1:$NGINX_PORT$BENCH_PATH") ;;
        tokengate)
            args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH")
            ;;
        tokengate-baseline)
            args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$BASELINE_PORT$BENCH_PATH")
            ;;
        tokengate-access)
            args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ACCESS_PORT$BENCH_PATH")
            ;;
        tokengate-many-tokens)
            args+=(-s "$WORK/many-tokens.lua" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH")
            ;;
        tokengate-org-deny)
            args+=(-s "$WORK/org-deny.lua" -H "Authorization: Bearer $ORG_TOKEN"
                "http://127.0.0.1:$GATEWAY_PORT$DENY_PATH")
            ;;
        *) die "unknown target $target" ;;
    esac
    # In the background + wait, so that a signal to this script is handled at
    # once (cleanup stops wrk too) instead of after the run.
    local pids proxy0 redis0 upstream0
    # shellcheck disable=SC2207 # word splitting of pids is wanted
    pids=($(target_pids "$target"))
    proxy0=$(cpu_ticks "${pids[@]}")
    redis0=$(cpu_ticks "$REDIS_PID")
    upstream0=$(cpu_ticks "$UPSTREAM_PID")
    timeout -k 5 $((secs + 30)) wrk "${args[@]}" >"$out" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$out" >&2
        die "wrk against $target failed or overran its time bound"
    fi
    WRK_PID=""
    echo "$(($(cpu_ticks "${pids[@]}") - proxy0)) $(($(cpu_ticks "$REDIS_PID") - redis0))" \
        "$(($(cpu_ticks "$UPSTREAM_PID") - upstream0)) $(getconf CLK_TCK)" >"${out%.txt}.cpu"
    kill -0 "$GATEWAY_PID" 2>/dev/null ||
        die "tokengate died during the run; see $WORK/tokengate.log"
    if [[ -n $BASELINE_TOKENGATE ]]; then
        kill -0 "$BASELINE_PID" 2>/dev/null ||
            die "tokengate-baseline died during the run; see $WORK/baseline.log"
    fi
    if [[ $WITH_ACCESS == 1 ]]; then
        kill -0 "$ACCESS_PID" 2>/dev/null ||
            die "tokengate-access died during the run; see $WORK/tokengate-access.log"
    fi
}

say "warming up: ${WARMUP}s per target (${TARGETS[*]})"
for target in "${TARGETS[@]}"; do
    run_wrk "$target" "$WARMUP" "$WORK/wrk/warmup-$target.txt"
done

for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${TARGETS[@]}"; do
        say "round $round/$ROUNDS: $target (${DURATION}s, $CONNECTIONS connections)"
        run_wrk "$target" "$DURATION" "$WORK/wrk/round$round-$target.txt"
    done
done

# ------------------------------------------------------------- summary ----
python3 - "$WORK/wrk" "$ROUNDS" "${TARGETS[@]}" >"$WORK/results.md" <<'PY'
import re, statistics, sys

wrk_dir, rounds, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}

def parse(path):
    text = open(path).read()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        sys.exit(f"no Requests/sec line in {path}")
    lat = {p: float(v) * UNIT_MS[u] for p, v, u in
           re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)}
    if set(lat) != {"50", "99"}:
        sys.exit(f"no latency distribution in {path} (was wrk run with --latency?)")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"rps": float(rps.group(1)), "p50": lat["50"], "p99": lat["99"],
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sockerr": sum(map(int, sock.groups())) if sock else 0}

def parse_cpu(path, requests):
    """CPU microseconds per request of the target's own processes, of Redis."""
    proxy, redis, _upstream, hz = map(int, open(path).read().split())
    return proxy * 1e6 / hz / requests, redis * 1e6 / hz / requests

def requests_of(path):
    m = re.search(r"^\s*(\d+) requests in", open(path).read(), re.M)
    return int(m.group(1)) if m else 0

res = {t: [parse(f"{wrk_dir}/round{r}-{t}.txt") for r in range(1, rounds + 1)] for t in targets}
for t in targets:
    for r, x in enumerate(res[t], start=1):
        n = requests_of(f"{wrk_dir}/round{r}-{t}.txt")
        x["cpu"], x["redis_cpu"] = parse_cpu(f"{wrk_dir}/round{r}-{t}.cpu", n) if n else (0.0, 0.0)
med = statistics.median

def ms(x):
    return f"{x:.2f} ms" if x < 100 else f"{x:.0f} ms"

head = (["target"] + [f"round {r} req/s" for r in range(1, rounds + 1)]
        + ["median req/s", "median p50", "median p99", "ratio to nginx",
           "CPU µs/req", "Redis CPU µs/req"])
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|")
for t in targets:
    runs = res[t]
    if "nginx" in res:
        ratio = f"{med(x['rps'] / n['rps'] for x, n in zip(runs, res['nginx'])):.2f}"
    else:
        ratio = "n/a"
    row = ([t] + [f"{x['rps']:,.0f}" for x in runs]
           + [f"{med(x['rps'] for x in runs):,.0f}", ms(med(x['p50'] for x in runs)),
              ms(med(x['p99'] for x in runs)), ratio,
              f"{med(x['cpu'] for x in runs):.1f}",
              f"{med(x['redis_cpu'] for x in runs):.1f}" if t.startswith("tokengate") else "-"])
    print("| " + " | ".join(row) + " |")

print()
if "nginx" in res and "tokengate" in res:
    r = med(g["rps"] / n["rps"] for g, n in zip(res["tokengate"], res["nginx"]))
    print(f"tokengate/nginx requests/s (median of per-round ratios): {r:.2f}")
if "tokengate" in res and "tokengate-access" in res:
    r = med(a["rps"] / g["rps"] for a, g in zip(res["tokengate-access"], res["tokengate"]))
    cpu = med(a["cpu"] for a in res["tokengate-access"]) - med(g["cpu"] for g in res["tokengate"])
    rcpu = (med(a["redis_cpu"] for a in res["tokengate-access"])
            - med(g["redis_cpu"] for g in res["tokengate"]))
    print(f"access checks (warm cache): {r:.3f} of the plain path's requests/s "
          f"(median of per-round ratios, a cost of {100 * (1 - r):.1f} %); "
          f"{cpu:+.1f} tokengate CPU µs/req, {rcpu:+.1f} Redis CPU µs/req")

    print("CPU µs/req: CPU time of the target's own processes (nginx: its workers) per "
          "request served, median over rounds; Redis's is shown apart.")
for t in targets:
    non2xx = sum(x["non2xx"] for x in res[t])
    sockerr = sum(x["sockerr"] for x in res[t])
    expected_non2xx = t.endswith("-deny")  # every response is meant to be a 403
    if (non2xx and not expected_non2xx) or sockerr:
        print(f"WARNING: {t}: {non2xx} non-2xx/3xx responses, {sockerr} socket errors "
              f"over {rounds} rounds (see the raw wrk outputs)")
PY

{
    echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)," \
        "$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB RAM"}')"
    echo "settings: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds, ${WARMUP}s warm-up per target"
    echo
    cat "$WORK/results.md"
} | tee "$WORK/summary.md"
echo
echo "raw wrk outputs: $WORK/wrk/ ; logs and summary.md: $WORK"
