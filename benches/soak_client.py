#!/usr/bin/env python3
"""Counting client for benches/soak.sh: CONNECTIONS keep-alive connections
send GET requests with a team token for DURATION seconds and record, for
every request, when it started and ended and how it ended: an HTTP status,
or `lost` (the connection failed after the request was written and before
a complete response arrived).

A request is only written on an open connection; when the gateway answers
`Connection: close` (a drain), the client opens a new connection for the
next request, as HTTP clients do. A connection that fails before a request
is written loses nothing: the request is sent on a new connection.

Writes to stdout at the end one JSON line per request that did not get a
200, {"start": t, "end": t, "outcome": "503"|...|"lost"}, and one line with
the number of 200s, {"outcome": "200", "count": n}: a soak sends millions
of requests, and only the others need their times.
"""

import http.client
import json
import socket
import sys
import threading
import time


def worker(host, port, token, path, deadline, out, lock, answered):
    records = []
    ok = 0
    conn = None
    while time.monotonic() < deadline:
        if conn is None:
            try:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.connect()
            except OSError:
                conn = None
                time.sleep(0.01)  # nothing was written: nothing lost
                continue
        start = time.monotonic()
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        except OSError:
            # The connection was found closed while writing: with
            # http.client the request may or may not have left; a closed
            # keep-alive connection refuses the write before any byte.
            conn.close()
            conn = None
            continue
        try:
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                ok += 1
            else:
                records.append((start, time.monotonic(), str(response.status)))
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            records.append((start, time.monotonic(), "lost"))
            conn.close()
            conn = None
    with lock:
        out.extend(records)
        answered[0] += ok


def main():
    host, port, token, path, seconds, connections = sys.argv[1:7]
    deadline = time.monotonic() + float(seconds)
    out, lock, answered = [], threading.Lock(), [0]
    threads = [
        threading.Thread(
            target=worker,
            args=(host, int(port), token, path, deadline, out, lock, answered),
            daemon=True,
        )
        for _ in range(int(connections))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(float(seconds) + 30)
    print(json.dumps({"outcome": "200", "count": answered[0]}))
    epoch = time.time() - time.monotonic()
    for start, end, outcome in out:
        print(json.dumps({"start": start + epoch, "end": end + epoch, "outcome": outcome}))


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    main()
