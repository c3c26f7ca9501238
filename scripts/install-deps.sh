#!/usr/bin/env bash
# Install the system packages tokengate's tests and benchmarks need on Debian 12.
#
#   scripts/install-deps.sh test    redis-server + redis-cli (the test suite
#                                   starts its own redis-server on a free port;
#                                   its sentinels run as `redis-server --sentinel`,
#                                   its Cluster is made with `redis-cli --cluster
#                                   create`, its TLS node uses Debian's TLS build),
#                                   python3 with venv/ensurepip (the real-client
#                                   test builds a virtualenv and pip-installs
#                                   tests/clients/requirements.txt from PyPI),
#                                   curl (a real client for Expect: 100-continue)
#                                   and chromium + chromium-driver (the web UI's
#                                   browser tests drive headless Chromium over
#                                   WebDriver)
#   scripts/install-deps.sh bench   the above, plus nginx (pass-through baseline),
#                                   wrk (load generator), python3, perf and
#                                   valgrind (used by benches/load.sh and
#                                   benches/cpu.sh)
#
# Run as root. Idempotent: it checks which commands are missing and only then
# runs `apt-get update` (once) and `apt-get install -y`. It never leaves a
# system service running or enabled: while installing, a policy-rc.d that
# exits 101 keeps Debian's postinst scripts from starting redis/nginx, and any
# service this run installed is stopped and disabled afterwards. Tests and the
# benchmark start their own private instances on 127.0.0.1.
set -euo pipefail

usage() {
    echo "usage: $0 test|bench" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
mode=$1

# "command package" pairs: a package is needed when its command is missing.
needed=("redis-server redis-server" "redis-cli redis-tools" "curl curl")
case "$mode" in
    test) needed+=("python3 python3" "chromium chromium" "chromedriver chromium-driver") ;;
    bench) needed+=("nginx nginx-light" "wrk wrk" "python3 python3" "perf linux-perf" "valgrind valgrind") ;;
    *) usage ;;
esac

log() { echo "install-deps: $*"; }

# Root's PATH may lack the sbin directories when started via `su` or sudo.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing_pkgs=()
for pair in "${needed[@]}"; do
    cmd=${pair%% *}
    pkg=${pair#* }
    if path=$(command -v "$cmd"); then
        log "ok       $cmd ($path)"
    else
        log "missing  $cmd -> package $pkg"
        missing_pkgs+=("$pkg")
    fi
done

# The real-client test needs `python3 -m venv` (Debian ships it apart).
if [[ $mode == test ]] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "missing  python3 venv/ensurepip -> package python3-venv"
    missing_pkgs+=("python3-venv")
fi

if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
    log "nothing to install for '$mode'"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    log "error: installing ${missing_pkgs[*]} needs root; re-run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Keep services from starting while packages install: invoke-rc.d (and
# deb-systemd-invoke) ask /usr/sbin/policy-rc.d and skip the start on exit 101.
# An existing policy-rc.d is put back afterwards, whatever happens.
policy=/usr/sbin/policy-rc.d
policy_backup=""
restore_policy() {
    if [[ -n $policy_backup ]]; then
        mv -f "$policy_backup" "$policy"
    else
        rm -f "$policy"
    fi
}
if [[ -e $policy ]]; then
    policy_backup=$(mktemp "$policy.tokengate-backup.XXXXXX")
    cp -p "$policy" "$policy_backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# written by tokengate scripts/install-deps.sh for the duration of an install\nexit 101\n' >"$policy"
chmod 755 "$policy"
log "installed a temporary $policy (exit 101) so no service starts"

log "apt-get update"
apt-get update -q

# Debian 12 ships nginx-light as a transitional package for nginx; fall back to
# plain nginx where it is not available.
for i in "${!missing_pkgs[@]}"; do
    if [[ ${missing_pkgs[$i]} == nginx-light ]] &&
        ! apt-cache show nginx-light >/dev/null 2>&1; then
        log "nginx-light not available, using nginx"
        missing_pkgs[i]=nginx
    fi
done

log "apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"

restore_policy
trap - EXIT
if [[ -n $policy_backup ]]; then log "restored the previous $policy"; else log "removed the temporary $policy"; fi

# Belt and braces: stop and disable any service this run brought in, in case
# something started it anyway (or the init system enables it for next boot).
for pkg in "${missing_pkgs[@]}"; do
    case "$pkg" in
        redis-server) svc=redis-server ;;
        nginx | nginx-light) svc=nginx ;;
        *) continue ;;
    esac
    if [[ -d /run/systemd/system ]]; then
        log "systemctl disable --now $svc"
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
        if service "$svc" status >/dev/null 2>&1; then
            log "service $svc stop"
            service "$svc" stop || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            log "update-rc.d $svc disable"
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    fi
done

# Final check: every command asked for must now be on PATH.
status=0
for pair in "${needed[@]}"; do
    cmd=${pair%% *}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        log "error: $cmd still missing after install" >&2
        status=1
    fi
done
[[ $status -eq 0 ]] && log "done: all '$mode' dependencies present"
exit "$status"
