#!/usr/bin/env python3
"""One GET per token through a gateway, and the CPU the gateway spent on them.

Used by benches/load.sh (COLD_START=N): right after a restart, the first
request of each of N tokens ("cold"), then a second one each ("warm"), with
the same client, so the two CPU figures compare. Prints one JSON object:
requests, non-200 answers, wall seconds, and CPU microseconds per request of
the gateway's process and of Redis (from /proc/PID/stat, user + system).

  first_requests.py --port P --path /api/v2/workspaces/ws-1 --tokens FILE \
      --count N --connections 32 --gateway-pid PID --redis-pid PID

Keep-alive HTTP/1.1 over CONNECTIONS connections to 127.0.0.1; the whole run
is bounded by --timeout seconds (each request by 10 s). Exits 1 with a
message on any failure.
"""

import argparse
import asyncio
import json
import os
import sys
import time

REQUEST_TIMEOUT = 10.0


def cpu_ticks(pid):
    """User + system clock ticks of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces; fields after ')' are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def read_response(reader):
    """Reads one response; returns (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise RuntimeError(f"response without a length (status {status})")
    return status, headers.get("connection", "").lower() != "close"


async def worker(port, path, tokens, next_index, statuses):
    reader = writer = None
    try:
        while True:
            i = next_index[0]
            if i >= len(tokens):
                return
            next_index[0] = i + 1
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {tokens[i]}\r\n\r\n".encode()
            )
            await writer.drain()
            status, keep_alive = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            statuses.append(status)
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def run(args, tokens):
    next_index, statuses = [0], []
    workers = [worker(args.port, args.path, tokens, next_index, statuses)
               for _ in range(min(args.connections, len(tokens)))]
    await asyncio.wait_for(asyncio.gather(*workers), args.timeout)
    return statuses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--tokens", required=True, help="file, one token per line")
    p.add_argument("--count", type=int, required=True, help="use the first COUNT tokens")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--gateway-pid", type=int, required=True)
    p.add_argument("--redis-pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=0.3,
                   help="seconds to wait after the last answer before reading CPU "
                        "(work the requests left behind, e.g. last-used writes)")
    args = p.parse_args()

    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()][: args.count]
    if len(tokens) < args.count:
        sys.exit(f"first_requests.py: {args.tokens} has {len(tokens)} tokens, "
                 f"{args.count} wanted")
    hz = os.sysconf("SC_CLK_TCK")
    gateway0, redis0 = cpu_ticks(args.gateway_pid), cpu_ticks(args.redis_pid)
    started = time.monotonic()
    try:
        statuses = asyncio.run(run(args, tokens))
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, RuntimeError,
            ValueError) as e:
        sys.exit(f"first_requests.py: requests failed: {type(e).__name__}: {e}")
    seconds = time.monotonic() - started
    time.sleep(args.settle)
    gateway1, redis1 = cpu_ticks(args.gateway_pid), cpu_ticks(args.redis_pid)
    n = len(statuses)
    print(json.dumps({
        "requests": n,
        "non200": sum(1 for s in statuses if s != 200),
        "seconds": round(seconds, 3),
        "cpu_us_per_req": (gateway1 - gateway0) * 1e6 / hz / n,
        "redis_cpu_us_per_req": (redis1 - redis0) * 1e6 / hz / n,
    }))


if __name__ == "__main__":
    main()
