#!/usr/bin/env bash
# benches/load.sh — end-to-end load benchmark for tokengate.
#
# What it measures: requests/s and latency (p50, p99) of one local HTTP/1.1
# upstream (`bench-upstream`, reads the request and answers 200
# `{"ok":true}`) reached
#   1. directly                         ("upstream": the ceiling),
#   2. through an nginx pass-through    ("nginx": the baseline, no auth;
#      proxy, 2 workers, upstream        skipped when nginx is not installed),
#      keepalive 64
#   3. through tokengate with a valid   ("tokengate": the real hot path: token
#      team token, no access checks      shape check, one Redis lookup, SHA-256
#      (the default policy without its   verify, policy, forward),
#      `requires:` rules)
#   4. through tokengate with access    ("tokengate-access": the same plus the
#      checks on, warm cache (the        access check of the default policy:
#      default policy; the team has      the workspace's organization from the
#      read access to ws-1)              resolver's cache, the team's access
#                                        from one more Redis read; WITH_ACCESS=0
#                                        leaves it out),
# all with `wrk -t1 -c$CONNECTIONS --latency` on GET /api/v2/workspaces/ws-1,
# plus the optional load profiles below. wrk uses one thread, so on a 2-core
# machine it takes one core and the proxy plus upstream share the other;
# compare numbers only within one run. Each target is warmed for 2 s, then
# the set is measured ROUNDS times, interleaved (upstream, nginx, tokengate,
# upstream, ...), so noise hits every target alike. The summary is a markdown
# table with each round's requests/s, the medians, the median over rounds of
# each round's ratio to nginx, and the CPU time each target's own processes
# (and Redis) spent per request served, read from /proc: steadier than
# requests/s on a noisy machine; then one line per profile that needs one
# (the flood ratio, the cold start, the cost of access checks).
#
# Profiles (each measured in the same interleaved rounds as nginx):
#   WITH_ORG_DENY=1  "tokengate-org-deny": an organization token POSTing a
#                    run apply, which policy denies with 403 (nothing forwarded)
#   TOKENS=N         "tokengate-many-tokens": requests rotate over N distinct
#                    team tokens (N teams written straight into Redis by the
#                    `bench-tokens` helper), so credential reads are rarely
#                    shared: store reads dominate. TOKENS=10000 is the
#                    issue-15 profile. (MANY_TOKENS=N is the old name.)
#   POST_BODY=1      "tokengate-post-body" and "nginx-post-body": the same
#                    requests to both, BODY_METHOD (POST: /api/v2/organizations
#                    /acme/workspaces; PATCH: /api/v2/workspaces/ws-1) with a
#                    BODY_BYTES (4096) JSON:API body whose data.attributes
#                    (auto-apply false, a padded description) the policy's
#                    org-no-auto-apply body rule reads; organization token
#   FLOOD=1          "tokengate-under-flood": valid team-token traffic while a
#                    second wrk (FLOOD_CONNECTIONS connections, paced to about
#                    FLOOD_RATE req/s; 0 = as fast as it can) sends shape-valid
#                    tokens that must fail: the same token id with wrong
#                    secrets, and unknown ids, alternately. Also
#                    "tokengate-flood-only": that flood alone, unpaced, on
#                    CONNECTIONS connections (the gateway's CPU per flood
#                    request). The summary adds the valid throughput under the
#                    flood relative to "tokengate" (target >= 0.90). With nginx,
#                    also "nginx-under-flood", the control: nginx's valid
#                    traffic while the same paced flood goes to a second nginx
#                    server that answers 401 at once (what the flood's wrk and
#                    the shared cores cost any proxy on this machine).
#   COLD_START=N     after the rounds, ROUNDS times: restart tokengate (a new
#                    process, nothing cached) with N tokens in the store, send
#                    each token's first request (CONNECTIONS keep-alive
#                    connections, benches/first_requests.py), then a second
#                    request each; reports the gateway's (and Redis's) CPU per
#                    first and per second request. COLD_START=1 means 10000.
#
# How to run (from anywhere; needs redis-server, wrk, curl, python3, cargo,
# and optionally nginx — `scripts/install-deps.sh bench` installs them):
#
#   benches/load.sh
#   DURATION=30 ROUNDS=5 CONNECTIONS=64 benches/load.sh
#   WITH_ORG_DENY=1 TOKENS=10000 POST_BODY=1 FLOOD=1 COLD_START=10000 benches/load.sh
#
# Environment:
#   DURATION       seconds per measured wrk run (default 10)
#   ROUNDS         how many interleaved rounds (default 3)
#   CONNECTIONS    wrk connections (default 32)
#   WITH_ORG_DENY  1 adds the "tokengate-org-deny" target (default off)
#   WITH_ACCESS    0 leaves out the "tokengate-access" target (default on)
#   LOG_LEVEL      tokengate log level (default info: one access line per request)
#   TOKENS         N >= 2 adds "tokengate-many-tokens" over N team tokens (default off)
#   MANY_TOKENS    the old name of TOKENS
#   POST_BODY      1 adds "nginx-post-body" and "tokengate-post-body" (default off)
#   BODY_METHOD    POST (default) or PATCH, for POST_BODY
#   BODY_BYTES     body size in bytes for POST_BODY (default 4096)
#   FLOOD          1 adds "tokengate-flood-only", "tokengate-under-flood" and "nginx-under-flood" (default off)
#   FLOOD_RATE     pace of the flood beside valid traffic, req/s (default 5000; 0: unpaced)
#   FLOOD_CONNECTIONS  connections of that flood (default FLOOD_RATE/100, so
#                  each waits 10 ms between requests; 10 when unpaced)
#   COLD_START     N >= 2: measure restarts with N tokens (1 means 10000; default off)
#   WORKERS        tokengate's `workers` (default: the config default, one per CPU)
#   REUSE_PORT     1: tokengate's `listen_reuse_port: true` (one SO_REUSEPORT socket per worker)
#   BASELINE_TOKENGATE  path of another tokengate binary (e.g. a build of the
#                  previous commit) to run beside this one, same config and
#                  Redis, as target "tokengate-baseline": A/B in one run
#   BASELINE_WORKERS  the baseline's `workers` (default: as WORKERS); with
#                  BASELINE_TOKENGATE set to this build, an A/B of the worker
#                  count in one run
#
# Everything listens on 127.0.0.1 on free ports and runs in a fresh temp dir
# (printed at the end, with the raw wrk outputs and every process's log;
# tokens are kept in its secrets/ folder, readable by this user only); all
# processes started here are stopped on exit. Every wrk run and every
# request batch is bounded in time.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WITH_ORG_DENY=${WITH_ORG_DENY:-0}
WITH_ACCESS=${WITH_ACCESS:-1}
TOKENS=${TOKENS:-}
MANY_TOKENS=${MANY_TOKENS:-} # the old name of TOKENS
POST_BODY=${POST_BODY:-0}
BODY_METHOD=${BODY_METHOD:-POST}
BODY_BYTES=${BODY_BYTES:-4096}
FLOOD=${FLOOD:-0}
FLOOD_RATE=${FLOOD_RATE:-5000}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-}
COLD_START=${COLD_START:-0}
LOG_LEVEL=${LOG_LEVEL:-info} # tokengate log level; info writes one access line per request
WORKERS=${WORKERS:-}
REUSE_PORT=${REUSE_PORT:-0}
BASELINE_TOKENGATE=${BASELINE_TOKENGATE:-}
BASELINE_WORKERS=${BASELINE_WORKERS:-}
WARMUP=2
BENCH_PATH=/api/v2/workspaces/ws-1
DENY_PATH=/api/v2/runs/run-1/actions/apply
FORGED_TOKENS=1000 # distinct tokens the flood rotates over

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
TOKENGATE=$TARGET_DIR/release/tokengate
BENCH_UPSTREAM=$TARGET_DIR/release/bench-upstream
BENCH_TOKENS=$TARGET_DIR/release/bench-tokens
FIRST_REQUESTS=$ROOT/benches/first_requests.py
POLICY_FILE=$ROOT/config/policy.yaml

say() { echo "load.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

[[ $FLOOD_RATE =~ ^(0|[1-9][0-9]*)$ ]] || die "FLOOD_RATE must be a non-negative integer, got '$FLOOD_RATE'"
if [[ -z $FLOOD_CONNECTIONS ]]; then
    # A 10 ms pause per connection: the responses' latency (about 1 ms) then
    # slows the flood only a little below FLOOD_RATE.
    FLOOD_CONNECTIONS=$((FLOOD_RATE > 0 ? (FLOOD_RATE + 99) / 100 : 10))
fi
for var in DURATION ROUNDS CONNECTIONS FLOOD_CONNECTIONS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '${!var}'"
done
((FLOOD_CONNECTIONS <= 1000)) || die "FLOOD_CONNECTIONS=$FLOOD_CONNECTIONS: at most 1000"
if [[ -n $MANY_TOKENS ]]; then
    [[ -z $TOKENS || $TOKENS == "$MANY_TOKENS" ]] ||
        die "TOKENS=$TOKENS and MANY_TOKENS=$MANY_TOKENS disagree; MANY_TOKENS is the old name of TOKENS: set only TOKENS"
    TOKENS=$MANY_TOKENS
fi
TOKENS=${TOKENS:-0}
for var in TOKENS COLD_START; do
    [[ ${!var} =~ ^(0|[1-9][0-9]*)$ ]] || die "$var must be a non-negative integer, got '${!var}'"
done
for var in WITH_ORG_DENY POST_BODY FLOOD; do
    [[ ${!var} == 0 || ${!var} == 1 ]] || die "$var must be 0 or 1, got '${!var}'"
done
[[ $TOKENS -ne 1 ]] || die "TOKENS=1 is the plain tokengate target; use TOKENS=N with N >= 2 (or 0 for off)"
((TOKENS <= 1000000)) || die "TOKENS=$TOKENS: at most 1000000"
[[ $COLD_START -ne 1 ]] || COLD_START=10000
((COLD_START <= 1000000)) || die "COLD_START=$COLD_START: at most 1000000"
[[ $BODY_BYTES =~ ^[1-9][0-9]*$ ]] && ((BODY_BYTES >= 256 && BODY_BYTES <= 1048576)) ||
    die "BODY_BYTES must be an integer from 256 to 1048576, got '$BODY_BYTES'"
case "$BODY_METHOD" in
    POST) BODY_PATH=/api/v2/organizations/acme/workspaces ;;
    PATCH) BODY_PATH=/api/v2/workspaces/ws-1 ;;
    *) die "BODY_METHOD must be POST or PATCH, got '$BODY_METHOD'" ;;
esac
# wrk paces per connection (delay() in whole ms after each response), so the
# flood's FLOOD_CONNECTIONS connections each wait FLOOD_DELAY_MS: at most
# about FLOOD_RATE req/s; the summary reports the rate reached.
FLOOD_DELAY_MS=0
if [[ $FLOOD_RATE -gt 0 ]]; then
    FLOOD_DELAY_MS=$(((FLOOD_CONNECTIONS * 1000 + FLOOD_RATE / 2) / FLOOD_RATE))
    ((FLOOD_DELAY_MS >= 1)) ||
        die "FLOOD_RATE=$FLOOD_RATE is more than FLOOD_CONNECTIONS=$FLOOD_CONNECTIONS connections can be paced to (1 ms each); raise FLOOD_CONNECTIONS or use FLOOD_RATE=0"
fi
# Tokens written into the store: enough for TOKENS and for COLD_START.
STORE_TOKENS=$((TOKENS > COLD_START ? TOKENS : COLD_START))
[[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"
[[ $REUSE_PORT == 0 || $REUSE_PORT == 1 ]] || die "REUSE_PORT must be 0 or 1, got '$REUSE_PORT'"
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
mkdir -p "$WORK/wrk" "$WORK/redis" "$WORK/nginx" "$WORK/cold"
# Tokens live here: readable by this user only.
SECRETS=$WORK/secrets
mkdir -m 700 "$SECRETS"
PIDS=()
WRK_PID=""
FLOOD_PID=""

cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    if [[ -n $FLOOD_PID ]]; then kill -TERM "$FLOOD_PID" 2>/dev/null || true; fi
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
say "building release binaries (tokengate, bench-upstream, bench-tokens)"
(cd "$ROOT" && cargo build --release --bin tokengate --bin bench-upstream --bin bench-tokens) ||
    die "cargo build failed"
[[ -x $TOKENGATE && -x $BENCH_UPSTREAM && -x $BENCH_TOKENS ]] ||
    die "expected $TOKENGATE, $BENCH_UPSTREAM and $BENCH_TOKENS after the build (is CARGO_TARGET_DIR right?)"
[[ $COLD_START -eq 0 || -f $FIRST_REQUESTS ]] || die "$FIRST_REQUESTS not found"

{
    read -r REDIS_PORT
    read -r UPSTREAM_PORT
    read -r NGINX_PORT
    read -r GATEWAY_PORT
    read -r BASELINE_PORT
    read -r ACCESS_PORT
    read -r NGINX_REFUSE_PORT
} < <(free_ports 7)

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
    # Request bodies (POST_BODY) are read whole into memory before they are
    # forwarded, as tokengate does; never into a temp file.
    client_body_buffer_size 1m;
    client_max_body_size 2m;
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

    # The control for FLOOD=1 ("nginx-under-flood"): the same paced flood,
    # refused at once, beside nginx's own valid traffic.
    server {
        listen 127.0.0.1:$NGINX_REFUSE_PORT;
        location / {
            return 401;
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
    if [[ $REUSE_PORT == 1 ]]; then echo "listen_reuse_port: true" >>"$1"; fi
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

# private FILE: FILE is created readable by this user only (tokens).
private() {
    (umask 077 && cat >"$1")
}

cli org create --config "$CFG" acme >"$WORK/org.json"
cli team create --config "$CFG" --org acme dev >"$WORK/team.json"
TEAM_ID=$(json_field id <"$WORK/team.json")
# The token itself is kept out of logs; only its id is printed.
TOKEN_JSON=$(cli token create --config "$CFG" --team "$TEAM_ID")
TOKEN=$(json_field token <<<"$TOKEN_JSON")
printf '%s\n' "$TOKEN" | private "$SECRETS/team-token"
say "created org acme, team $TEAM_ID, team token $(json_field id <<<"$TOKEN_JSON")"
if [[ $WITH_ACCESS == 1 ]]; then
    # The workspace is checked upstream (bench-upstream answers the lookup).
    cli access set --config "$ACCESS_CFG" --team "$TEAM_ID" --workspace ws-1 --access read \
        >"$WORK/access.json"
    say "gave team $TEAM_ID read access to ws-1"
fi
if [[ $WITH_ORG_DENY == 1 || $POST_BODY == 1 ]]; then
    ORG_TOKEN_JSON=$(cli token create --config "$CFG" --org acme)
    ORG_TOKEN=$(json_field token <<<"$ORG_TOKEN_JSON")
    printf '%s\n' "$ORG_TOKEN" | private "$SECRETS/org-token"
    say "created organization token $(json_field id <<<"$ORG_TOKEN_JSON")"
fi
if [[ $WITH_ORG_DENY == 1 ]]; then
    cat >"$WORK/org-deny.lua" <<EOF
wrk.method = "POST"
wrk.body = ""
wrk.headers["Content-Type"] = "application/vnd.api+json"
EOF
fi

# Lua for the wrk scripts below: the lines of a file (tokens), at most LIMIT.
LUA_LINES='
local function lines(path, limit)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
    if limit and #out >= limit then break end
  end
  assert(#out > 0, "no lines in " .. path)
  return out
end
'

if [[ $STORE_TOKENS -gt 0 ]]; then
    # N teams and their tokens, written straight into Redis by bench-tokens
    # (the library's own store and token code; one CLI call per token would
    # take minutes for 10,000).
    say "creating $STORE_TOKENS teams and tokens in the store (bench-tokens)"
    timeout 600 "$BENCH_TOKENS" create --config "$CFG" --org acme --count "$STORE_TOKENS" \
        --out "$SECRETS/tokens" >"$WORK/bench-tokens.json" 2>>"$WORK/cli.log" ||
        die "bench-tokens create failed or overran 600 s; see $WORK/cli.log"
    say "created: $(cat "$WORK/bench-tokens.json")"
fi

if [[ $TOKENS -gt 1 ]]; then
    # Each request carries the next of the first TOKENS tokens.
    cat >"$WORK/many-tokens.lua" <<EOF
$LUA_LINES
local tokens = lines("$SECRETS/tokens", $TOKENS)
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1] })
end
EOF
fi

if [[ $POST_BODY == 1 ]]; then
    # BODY_BYTES of JSON:API whose data.attributes the policy's body rule
    # (org-no-auto-apply) reads: auto-apply false is allowed; the same body
    # with auto-apply true must be refused (checked below).
    make_body() {
        python3 - "$BODY_BYTES" "$1" <<'PY'
import json, sys
size, auto_apply = int(sys.argv[1]), sys.argv[2] == "true"
def body(pad):
    return json.dumps({"data": {"type": "workspaces", "attributes": {
        "name": "ws-bench", "auto-apply": auto_apply, "terraform-version": "1.9.8",
        "execution-mode": "remote", "description": "x" * pad}}}, separators=(",", ":"))
pad = size - len(body(0))
if pad < 0:
    sys.exit(f"BODY_BYTES={size} is smaller than the smallest body ({len(body(0))})")
sys.stdout.write(body(pad))
PY
    }
    make_body false >"$WORK/body.json" || die "could not build the request body"
    make_body true >"$WORK/body-auto-apply.json" || die "could not build the request body"
    [[ $(wc -c <"$WORK/body.json") -eq $BODY_BYTES ]] || die "the body is not $BODY_BYTES bytes"
    # The same script for nginx and tokengate: same method, headers, body.
    cat >"$WORK/post-body.lua" <<EOF
$LUA_LINES
local f = assert(io.open("$WORK/body.json", "rb"))
wrk.method = "$BODY_METHOD"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/vnd.api+json"
wrk.headers["Authorization"] = "Bearer " .. lines("$SECRETS/org-token")[1]
EOF
fi

if [[ $FLOOD == 1 ]]; then
    # Shape-valid tokens that must all fail: the team token's id with wrong
    # secrets and unknown ids, alternately (bench-tokens forge).
    printf '%s\n' "$TOKEN" |
        timeout 60 "$BENCH_TOKENS" forge --count "$FORGED_TOKENS" --out "$SECRETS/forged" \
            >/dev/null 2>>"$WORK/cli.log" || die "bench-tokens forge failed; see $WORK/cli.log"
    flood_script() { # flood_script DELAY_MS (0: unpaced)
        cat <<EOF
$LUA_LINES
local tokens = lines("$SECRETS/forged")
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1] })
end
EOF
        if [[ $1 -gt 0 ]]; then
            printf 'delay = function()\n  return %s\nend\n' "$1"
        fi
    }
    flood_script "$FLOOD_DELAY_MS" >"$WORK/flood-paced.lua"
    flood_script 0 >"$WORK/flood-unpaced.lua"
fi

# start_gateway CONFIG LOG: starts tokengate, sets GATEWAY_PID, waits until ready.
start_gateway() {
    local config=$1 logfile=$2 port
    port=$(sed -n 's/^listen: 127.0.0.1://p' "$config")
    # Appending, so that trim_log can empty the file under the running gateway.
    "$TOKENGATE" serve --config "$config" >>"$logfile" 2>&1 &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    wait_until "tokengate on 127.0.0.1:$port" "$GATEWAY_PID" "$logfile" \
        curl -fsS "http://127.0.0.1:$port/_tokengate/ready"
}

# stop_process PID WHAT: TERM, up to 10 s to exit, then KILL.
stop_process() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$2 did not stop within 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

start_gateway "$CFG" "$WORK/tokengate.log"
if [[ $WITH_ACCESS == 1 ]]; then
    PLAIN_PID=$GATEWAY_PID
    start_gateway "$ACCESS_CFG" "$WORK/tokengate-access.log"
    ACCESS_PID=$GATEWAY_PID
    GATEWAY_PID=$PLAIN_PID
fi
if [[ -n $BASELINE_TOKENGATE ]]; then
    # The same config on its own port; `workers` only if this binary knows it.
    sed "s/^listen: .*/listen: 127.0.0.1:$BASELINE_PORT/" "$CFG" >"$WORK/baseline.yaml"
    if [[ -n $BASELINE_WORKERS ]]; then
        sed -i '/^workers: /d' "$WORK/baseline.yaml"
        echo "workers: $BASELINE_WORKERS" >>"$WORK/baseline.yaml"
    fi
    if ! "$BASELINE_TOKENGATE" check --config "$WORK/baseline.yaml" >/dev/null 2>&1; then
        sed -i '/^workers:/d' "$WORK/baseline.yaml"
    fi
    "$BASELINE_TOKENGATE" serve --config "$WORK/baseline.yaml" >>"$WORK/baseline.log" 2>&1 &
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
        die "sanity check: $what should get HTTP $want, got $got (logs: $WORK/tokengate.log, $WORK/nginx/error.log)"
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
if [[ $STORE_TOKENS -gt 0 ]]; then
    for n in 1 "$STORE_TOKENS"; do
        expect_status "GET $BENCH_PATH with store token $n of $STORE_TOKENS" 200 \
            -H "Authorization: Bearer $(sed -n "${n}p" "$SECRETS/tokens")" \
            "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"
    done
fi
if [[ $POST_BODY == 1 ]]; then
    # expect_body_status WHAT CODE PORT BODY_FILE
    expect_body_status() {
        expect_status "$1" "$2" -X "$BODY_METHOD" -H "Content-Type: application/vnd.api+json" \
            -H "Authorization: Bearer $ORG_TOKEN" --data-binary "@$4" "http://127.0.0.1:$3$BODY_PATH"
    }
    expect_body_status "$BODY_METHOD $BODY_PATH, $BODY_BYTES-byte body, organization token" 200 \
        "$GATEWAY_PORT" "$WORK/body.json"
    expect_body_status "the same with auto-apply true (the body rule reads the body)" 403 \
        "$GATEWAY_PORT" "$WORK/body-auto-apply.json"
    if [[ $HAVE_NGINX -eq 1 ]]; then
        expect_body_status "$BODY_METHOD $BODY_PATH through nginx" 200 "$NGINX_PORT" "$WORK/body.json"
    fi
fi
if [[ $FLOOD == 1 ]]; then
    expect_status "GET $BENCH_PATH with the team token's id and a wrong secret" 401 \
        -H "Authorization: Bearer $(sed -n 1p "$SECRETS/forged")" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"
    expect_status "GET $BENCH_PATH with an unknown token id" 401 \
        -H "Authorization: Bearer $(sed -n 2p "$SECRETS/forged")" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"
    expect_status "GET $BENCH_PATH with the team token, after those" 200 \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH"
fi

# ---------------------------------------------------------------- load ----
TARGETS=(upstream)
[[ $HAVE_NGINX -eq 1 ]] && TARGETS+=(nginx)
TARGETS+=(tokengate)
[[ $WITH_ACCESS == 1 ]] && TARGETS+=(tokengate-access)
[[ -n $BASELINE_TOKENGATE ]] && TARGETS+=(tokengate-baseline)
[[ $TOKENS -gt 1 ]] && TARGETS+=(tokengate-many-tokens)
[[ $WITH_ORG_DENY == 1 ]] && TARGETS+=(tokengate-org-deny)
if [[ $POST_BODY == 1 ]]; then
    [[ $HAVE_NGINX -eq 1 ]] && TARGETS+=(nginx-post-body)
    TARGETS+=(tokengate-post-body)
fi
if [[ $FLOOD == 1 ]]; then
    [[ $HAVE_NGINX -eq 1 ]] && TARGETS+=(nginx-under-flood)
    TARGETS+=(tokengate-flood-only tokengate-under-flood)
fi

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

# context_switches PID...: context switches (voluntary and involuntary) of
# every thread of the processes so far; 0 for a process that is gone.
context_switches() {
    local total=0 pid n
    for pid in "$@"; do
        n=$(cat /proc/"$pid"/task/*/status 2>/dev/null |
            awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}') || n=0
        total=$((total + n))
    done
    echo "$total"
}

# The processes that do a target's work (nginx: its workers).
target_pids() {
    case "$1" in
        upstream) echo "$UPSTREAM_PID" ;;
        nginx | nginx-*) pgrep -P "$NGINX_PID" | tr '\n' ' ' ;;
        tokengate-baseline) echo "$BASELINE_PID" ;;
        tokengate-access) echo "$ACCESS_PID" ;;
        *) echo "$GATEWAY_PID" ;;
    esac
}

# run_wrk TARGET SECONDS OUTFILE: one bounded wrk run against TARGET; the
# CPU ticks used meanwhile by the target's processes, by Redis and by the
# upstream go to OUTFILE with .cpu instead of .txt. For the *-under-flood targets,
# the flood's own wrk runs beside it for the same time, its output in
# OUTFILE with .flood.txt instead of .txt.
run_wrk() {
    local target=$1 secs=$2 out=$3 args flood_args=()
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
        nginx-post-body) args+=(-s "$WORK/post-body.lua" "http://127.0.0.1:$NGINX_PORT$BODY_PATH") ;;
        nginx-under-flood)
            args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$NGINX_PORT$BENCH_PATH")
            flood_args=(-t1 "-c$FLOOD_CONNECTIONS" "-d${secs}s" --latency
                -s "$WORK/flood-paced.lua" "http://127.0.0.1:$NGINX_REFUSE_PORT$BENCH_PATH")
            ;;
        tokengate-post-body)
            args+=(-s "$WORK/post-body.lua" "http://127.0.0.1:$GATEWAY_PORT$BODY_PATH")
            ;;
        tokengate-flood-only)
            args+=(-s "$WORK/flood-unpaced.lua" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH")
            ;;
        tokengate-under-flood)
            args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH")
            flood_args=(-t1 "-c$FLOOD_CONNECTIONS" "-d${secs}s" --latency
                -s "$WORK/flood-paced.lua" "http://127.0.0.1:$GATEWAY_PORT$BENCH_PATH")
            ;;
        *) die "unknown target $target" ;;
    esac
    # In the background + wait, so that a signal to this script is handled at
    # once (cleanup stops wrk too) instead of after the run.
    local pids proxy0 switches0 redis0 upstream0
    # shellcheck disable=SC2207 # word splitting of pids is wanted
    pids=($(target_pids "$target"))
    proxy0=$(cpu_ticks "${pids[@]}")
    switches0=$(context_switches "${pids[@]}")
    redis0=$(cpu_ticks "$REDIS_PID")
    upstream0=$(cpu_ticks "$UPSTREAM_PID")
    if [[ ${#flood_args[@]} -gt 0 ]]; then
        timeout -k 5 $((secs + 30)) wrk "${flood_args[@]}" >"${out%.txt}.flood.txt" 2>&1 &
        FLOOD_PID=$!
    fi
    timeout -k 5 $((secs + 30)) wrk "${args[@]}" >"$out" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$out" >&2
        die "wrk against $target failed or overran its time bound"
    fi
    WRK_PID=""
    if [[ -n $FLOOD_PID ]]; then
        if ! wait "$FLOOD_PID"; then
            FLOOD_PID=""
            cat "${out%.txt}.flood.txt" >&2
            die "the flood's wrk beside $target failed or overran its time bound"
        fi
        FLOOD_PID=""
    fi
    echo "$(($(cpu_ticks "${pids[@]}") - proxy0)) $(($(cpu_ticks "$REDIS_PID") - redis0))" \
        "$(($(cpu_ticks "$UPSTREAM_PID") - upstream0)) $(getconf CLK_TCK)" \
        "$(($(context_switches "${pids[@]}") - switches0))" >"${out%.txt}.cpu"
    kill -0 "$GATEWAY_PID" 2>/dev/null ||
        die "tokengate died during the run; see $WORK/tokengate.log"
    trim_log "$WORK/tokengate.log"
    if [[ -n $BASELINE_TOKENGATE ]]; then
        kill -0 "$BASELINE_PID" 2>/dev/null ||
            die "tokengate-baseline died during the run; see $WORK/baseline.log"
        trim_log "$WORK/baseline.log"
    fi
    if [[ $WITH_ACCESS == 1 ]]; then
        kill -0 "$ACCESS_PID" 2>/dev/null ||
            die "tokengate-access died during the run; see $WORK/tokengate-access.log"
    fi
}

# trim_log LOG: the access lines of a run (about 10 MB/s at info level) would
# fill the disk over a long run. Between runs, every other line (warnings,
# errors) is appended to LOG's .other file and the last 100 lines are kept in
# its .last file; then LOG is emptied (the gateway appends to it).
trim_log() {
    local log=$1
    [[ -s $log ]] || return 0
    grep -v ' tokengate::access: ' "$log" >>"${log%.log}.other.log" || true
    tail -n 100 "$log" >"${log%.log}.last.log"
    : >"$log"
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

# ---------------------------------------------------------- cold start ----
# ROUNDS restarts: a new tokengate process (nothing cached) on a fresh port,
# then each token's first request, then a second request each, with the same
# client (benches/first_requests.py), CPU read from /proc around each pass.
if [[ $COLD_START -gt 0 ]]; then
    for ((round = 1; round <= ROUNDS; round++)); do
        stop_process "$GATEWAY_PID" tokengate
        read -r cold_port < <(free_ports 1)
        cold_cfg=$WORK/cold/tokengate-$round.yaml
        sed "s/^listen: .*/listen: 127.0.0.1:$cold_port/" "$CFG" >"$cold_cfg"
        started=$EPOCHREALTIME
        start_gateway "$cold_cfg" "$WORK/cold/tokengate-$round.log"
        echo "$started $EPOCHREALTIME $(cpu_ticks "$GATEWAY_PID") $(getconf CLK_TCK)" \
            >"$WORK/cold/round$round-start.txt"
        for pass in first second; do
            say "cold start $round/$ROUNDS: the $pass request of each of $COLD_START tokens"
            timeout -k 5 330 python3 "$FIRST_REQUESTS" --port "$cold_port" --path "$BENCH_PATH" \
                --tokens "$SECRETS/tokens" --count "$COLD_START" --connections "$CONNECTIONS" \
                --gateway-pid "$GATEWAY_PID" --redis-pid "$REDIS_PID" --timeout 300 \
                >"$WORK/cold/round$round-$pass.json" ||
                die "cold start $round: the $pass requests failed or overran 300 s (see $WORK/cold/tokengate-$round.log)"
        done
        kill -0 "$GATEWAY_PID" 2>/dev/null ||
            die "tokengate died during cold start $round; see $WORK/cold/tokengate-$round.log"
    done
fi

# ------------------------------------------------------------- summary ----
COLD_DIR=$WORK/cold COLD_START=$COLD_START CONNECTIONS=$CONNECTIONS FLOOD_RATE=$FLOOD_RATE \
    FLOOD_CONNECTIONS=$FLOOD_CONNECTIONS \
    python3 - "$WORK/wrk" "$ROUNDS" "${TARGETS[@]}" >"$WORK/results.md" <<'PY'
import json, os, re, statistics, sys

wrk_dir, rounds, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
env = os.environ
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
med = statistics.median

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
    requests = re.search(r"^\s*(\d+) requests in", text, re.M)
    return {"rps": float(rps.group(1)), "p50": lat["50"], "p99": lat["99"],
            "requests": int(requests.group(1)) if requests else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sockerr": sum(map(int, sock.groups())) if sock else 0}

def cpu_us(path, requests):
    """CPU microseconds per request of the target's own processes, of Redis
    and of the upstream; context switches per request of the target's own
    processes."""
    proxy, redis, upstream, hz, switches = map(int, open(path).read().split())
    if not requests:
        return 0.0, 0.0, 0.0, 0.0
    per = lambda ticks: ticks * 1e6 / hz / requests
    return per(proxy), per(redis), per(upstream), switches / requests

res = {}
for t in targets:
    res[t] = []
    for r in range(1, rounds + 1):
        x = parse(f"{wrk_dir}/round{r}-{t}.txt")
        served = x["requests"]
        if t.endswith("-under-flood"):
            # The proxy served both: CPU per request is over both.
            x["flood"] = parse(f"{wrk_dir}/round{r}-{t}.flood.txt")
            served += x["flood"]["requests"]
        x["cpu"], x["redis_cpu"], x["upstream_cpu"], x["switches"] = cpu_us(
            f"{wrk_dir}/round{r}-{t}.cpu", served)
        res[t].append(x)

def reference(t):
    """The nginx target a row is compared with: the same requests through nginx."""
    if t.endswith("-post-body") and "nginx-post-body" in res:
        return "nginx-post-body"
    return "nginx" if "nginx" in res else None

def ratio(a, b):
    return med(x["rps"] / y["rps"] for x, y in zip(res[a], res[b]))

def ms(x):
    return f"{x:.2f} ms" if x < 100 else f"{x:.0f} ms"

head = (["target"] + [f"round {r} req/s" for r in range(1, rounds + 1)]
        + ["median req/s", "median p50", "median p99", "ratio to nginx",
           "CPU µs/req", "Redis CPU µs/req", "upstream CPU µs/req", "switches/req"])
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|")
for t in targets:
    runs = res[t]
    ref = reference(t)
    row = ([t] + [f"{x['rps']:,.0f}" for x in runs]
           + [f"{med(x['rps'] for x in runs):,.0f}", ms(med(x['p50'] for x in runs)),
              ms(med(x['p99'] for x in runs)), f"{ratio(t, ref):.2f}" if ref else "n/a",
              f"{med(x['cpu'] for x in runs):.1f}",
              f"{med(x['redis_cpu'] for x in runs):.1f}" if t.startswith("tokengate") else "-",
              f"{med(x['upstream_cpu'] for x in runs):.1f}",
              f"{med(x['switches'] for x in runs):.2f}"])
    print("| " + " | ".join(row) + " |")

print()
if "nginx" in res and "tokengate" in res:
    print(f"tokengate/nginx requests/s (median of per-round ratios): {ratio('tokengate', 'nginx'):.2f}")
if "tokengate" in res and "tokengate-access" in res:
    cpu = med(a["cpu"] for a in res["tokengate-access"]) - med(g["cpu"] for g in res["tokengate"])
    rcpu = (med(a["redis_cpu"] for a in res["tokengate-access"])
            - med(g["redis_cpu"] for g in res["tokengate"]))
    r = ratio("tokengate-access", "tokengate")
    print(f"access checks (warm cache): {r:.3f} of the plain path's requests/s "
          f"(median of per-round ratios, a cost of {100 * (1 - r):.1f} %); "
          f"{cpu:+.1f} tokengate CPU µs/req, {rcpu:+.1f} Redis CPU µs/req")

print("CPU µs/req: CPU time of the target's own processes (nginx: its workers) per "
      "request served, median over rounds; Redis's and the upstream's are shown apart. "
      "switches/req: context switches (voluntary and involuntary) of the target's own "
      "threads per request.")
if "nginx-post-body" in res:
    print("ratio to nginx: tokengate-post-body against nginx-post-body (the same requests), "
          "every other row against nginx.")

if "tokengate-under-flood" in res:
    under = res["tokengate-under-flood"]
    floods = [x["flood"] for x in under]
    paced = (f"paced to at most ~{env['FLOOD_RATE']} req/s"
             if env.get("FLOOD_RATE", "0") != "0" else "unpaced")
    print(f"flood: valid team-token requests/s during the flood / without it (tokengate-under-flood"
          f" / tokengate, median of per-round ratios): **{ratio('tokengate-under-flood', 'tokengate'):.2f}**"
          f" (target ≥ 0.90); the flood beside it: {med(f['rps'] for f in floods):,.0f} req/s"
          f" over {env.get('FLOOD_CONNECTIONS', '?')} connections ({paced}), wrong secrets for the"
          f" same token id and unknown ids alternately; CPU µs/req of that row is over valid and"
          f" flood requests together.")
    if "nginx-under-flood" in res:
        print(f"control: nginx's own valid requests/s under the same paced flood, which a second"
              f" nginx server refuses at once (`return 401`) / without it (nginx-under-flood / nginx,"
              f" median of per-round ratios): {ratio('nginx-under-flood', 'nginx'):.2f}; what the"
              f" flood's load generator and the 2-core machine take from any proxy here.")
    if "tokengate-flood-only" in res:
        alone = res["tokengate-flood-only"]
        print(f"flood alone (tokengate-flood-only, unpaced, the same forged tokens):"
              f" {med(x['rps'] for x in alone):,.0f} req/s refused, gateway CPU"
              f" {med(x['cpu'] for x in alone):.1f} µs per flood request"
              f" (Redis {med(x['redis_cpu'] for x in alone):.1f} µs).")

cold_dir, cold_n = env.get("COLD_DIR"), int(env.get("COLD_START", "0"))
if cold_n:
    passes = {p: [json.load(open(f"{cold_dir}/round{r}-{p}.json")) for r in range(1, rounds + 1)]
              for p in ("first", "second")}
    starts = []
    for r in range(1, rounds + 1):
        t0, t1, ticks, hz = open(f"{cold_dir}/round{r}-start.txt").read().split()
        hz = int(hz)
        starts.append((float(t1) - float(t0), int(ticks) * 1000 / hz))
    first, second = passes["first"], passes["second"]
    f_cpu, s_cpu = med(x["cpu_us_per_req"] for x in first), med(x["cpu_us_per_req"] for x in second)
    print(f"cold start ({cold_n:,} tokens in the store, a new tokengate process each time,"
          f" {env.get('CONNECTIONS')} connections, medians over {rounds} restarts): the first request"
          f" of each token cost **{f_cpu:.1f}** gateway CPU µs (Redis"
          f" {med(x['redis_cpu_us_per_req'] for x in first):.1f}), the second {s_cpu:.1f} µs (Redis"
          f" {med(x['redis_cpu_us_per_req'] for x in second):.1f}): {f_cpu / s_cpu if s_cpu else float('nan'):.2f}×;"
          f" {cold_n / med(x['seconds'] for x in first):,.0f} first requests/s;"
          f" ready {med(s[0] for s in starts):.2f} s after start (polled every 0.1 s), start-up CPU"
          f" {med(s[1] for s in starts):.0f} ms (in {1000 / hz:.0f} ms clock ticks).")
    bad = sum(x["non200"] for p in passes.values() for x in p)
    if bad:
        print(f"WARNING: cold start: {bad} requests were not answered 200 (see {cold_dir})")

for t in targets:
    runs = res[t]
    non2xx = sum(x["non2xx"] for x in runs)
    sockerr = sum(x["sockerr"] for x in runs)
    if t == "tokengate-flood-only":
        allowed = sum(x["requests"] - x["non2xx"] for x in runs)
        if allowed:
            print(f"WARNING: {t}: {allowed} forged tokens were answered 2xx/3xx (see the raw wrk outputs)")
        non2xx = 0  # every response is meant to be a 401
    if t == "tokengate-under-flood":
        allowed = sum(x["flood"]["requests"] - x["flood"]["non2xx"] for x in runs)
        if allowed:
            print(f"WARNING: {t}: {allowed} forged tokens of the flood were answered 2xx/3xx")
        flood_err = sum(x["flood"]["sockerr"] for x in runs)
        if flood_err:
            print(f"WARNING: {t}: {flood_err} socket errors in the flood (see the .flood.txt outputs)")
    expected_non2xx = t.endswith("-deny")  # every response is meant to be a 403
    if (non2xx and not expected_non2xx) or sockerr:
        print(f"WARNING: {t}: {non2xx} non-2xx/3xx responses, {sockerr} socket errors "
              f"over {rounds} rounds (see the raw wrk outputs)")
PY

{
    echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)," \
        "$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB RAM"}')"
    echo "settings: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds, ${WARMUP}s warm-up per target"
    profiles=()
    [[ $TOKENS -gt 1 ]] && profiles+=("TOKENS=$TOKENS")
    [[ $POST_BODY == 1 ]] && profiles+=("POST_BODY: $BODY_METHOD $BODY_PATH, $BODY_BYTES-byte JSON body, organization token")
    [[ $FLOOD == 1 ]] && profiles+=("FLOOD_RATE=$FLOOD_RATE FLOOD_CONNECTIONS=$FLOOD_CONNECTIONS")
    [[ $COLD_START -gt 0 ]] && profiles+=("COLD_START=$COLD_START")
    if [[ ${#profiles[@]} -gt 0 ]]; then
        line="profiles: ${profiles[0]}"
        for profile in "${profiles[@]:1}"; do line+="; $profile"; done
        echo "$line"
    fi
    echo
    cat "$WORK/results.md"
} | tee "$WORK/summary.md"
echo
echo "raw wrk outputs: $WORK/wrk/ ; logs and summary.md: $WORK"
