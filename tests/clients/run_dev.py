#!/usr/bin/env python3
"""Start ``tokengate serve --dev`` on 127.0.0.1, build the fixture from its
banner, run tfe_clients.py against it, stop the gateway.

    python run_dev.py --binary target/release/tokengate [--fresh-per-group] \
        [--keep-fixture fx.json] [-- tfe_clients.py args, e.g. --only legacy,described]

Uses the Python it runs with for the driver (run it with the venv that has
the pinned clients). Exit status is the driver's (the worst one with
``--fresh-per-group``); 4 when the gateway did not start or its banner could
not be parsed. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "tfe_clients.py")
GROUPS = ["discovery", "account", "access", "legacy", "described", "user", "ttl"]
TOTALS = {"passed": 0, "failed": 0}

BANNER = {
    "base_url": re.compile(r"^\s*gateway\s+(http://127\.0\.0\.1:\d+)\s*$"),
    "org_owners": re.compile(r"^\s*organization\s+(\S+)\s+\(owners team (team-[A-Za-z0-9]+)\)"),
    "team": re.compile(r"^\s*team\s+(\S+)\s+\((team-[A-Za-z0-9]+)\)"),
    "user": re.compile(r"^\s*user\s+(\S+)\s+\((user-[A-Za-z0-9]+)\)"),
    "export": re.compile(r"^export\s+([A-Z_]+)=(\S+)\s*$"),
}


class Gateway:
    def __init__(self, binary: str, start_timeout: float = 15.0):
        self.proc = subprocess.Popen(
            [binary, "serve", "--dev", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.values: dict = {}
        lines: list[str] = []
        done = threading.Event()

        def read_banner():
            for line in self.proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("export USER_TOKEN="):
                    done.set()
                    break
            done.set()
            for _ in self.proc.stdout:  # keep draining
                pass

        threading.Thread(target=read_banner, daemon=True).start()
        if not done.wait(start_timeout):
            self.stop()
            raise RuntimeError(f"no banner within {start_timeout} s; stdout so far: {lines}")
        self.banner = lines
        fx = {}
        for line in lines:
            if m := BANNER["base_url"].match(line):
                self.base_url = m.group(1)
            elif m := BANNER["org_owners"].match(line):
                fx["org"], fx["other_team_id"] = m.group(1), m.group(2)
            elif m := BANNER["team"].match(line):
                fx["team_name"], fx["team_id"] = m.group(1), m.group(2)
            elif m := BANNER["user"].match(line):
                fx["user_name"], fx["user_id"] = m.group(1), m.group(2)
            elif m := BANNER["export"].match(line):
                key = {"TEAM_TOKEN": "team_token", "ORG_TOKEN": "org_token", "USER_TOKEN": "user_token"}.get(m.group(1))
                if key:
                    fx[key] = m.group(2)
        need = ["org", "other_team_id", "team_id", "user_id", "team_token", "org_token", "user_token"]
        if not getattr(self, "base_url", None) or any(k not in fx for k in need):
            self.stop()
            raise RuntimeError(f"banner not understood (have {sorted(fx)}): {lines}")
        # The dev mock API seeds one workspace; the banner does not name it.
        req = urllib.request.Request(f"{self.base_url}/api/v2/organizations/{fx['org']}/workspaces",
                                     headers={"Authorization": f"Bearer {fx['user_token']}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=5) as resp:
            ws = json.load(resp)["data"][0]
        fx["workspace_id"], fx["workspace_name"] = ws["id"], ws["attributes"]["name"]
        # serve --dev runs tokengate's defaults: organization tokens do not
        # mint team tokens (token_api.org_tokens_manage_team_tokens: false).
        fx["org_tokens_manage_team_tokens"] = False
        self.fixture = fx

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_driver(gw: Gateway, groups: list[str], extra: list[str], keep: str | None) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(gw.fixture, f, indent=1)
        path = f.name
    try:
        if keep:
            with open(keep, "w") as k:
                json.dump(dict(gw.fixture, base_url=gw.base_url), k, indent=1)
        cmd = [sys.executable, DRIVER, "--base-url", gw.base_url, "--fixture", path, "--only", ",".join(groups)] + extra
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        timer = threading.Timer(70, proc.kill)  # the driver stops itself well before this
        timer.start()
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                try:
                    ok = json.loads(line).get("ok")
                except ValueError:
                    continue
                TOTALS["passed" if ok else "failed"] += 1
            return proc.wait()
        finally:
            timer.cancel()
    finally:
        os.unlink(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--only", default=",".join(GROUPS))
    p.add_argument("--fresh-per-group", action="store_true",
                   help="a new gateway for every group, so no group sees another's token changes")
    p.add_argument("--keep-fixture", help="also write the fixture (with base_url) here")
    p.add_argument("--gateway-log", help="append the gateway's stderr (its access log) to this file")
    p.add_argument("driver_args", nargs="*", help="passed on to tfe_clients.py (after --)")
    args = p.parse_args()
    groups = [g for g in args.only.split(",") if g]
    batches = [[g] for g in groups] if args.fresh_per_group else [groups]
    worst = 0
    started = time.monotonic()
    for batch in batches:
        try:
            gw = Gateway(args.binary)
        except Exception as e:  # noqa: BLE001
            print(f"error: gateway did not start: {e}", file=sys.stderr)
            return 4
        try:
            rc = run_driver(gw, batch, args.driver_args, args.keep_fixture)
        finally:
            gw.stop()
            if args.gateway_log:
                time.sleep(0.2)
                with open(args.gateway_log, "a") as log:
                    log.write("\n".join(gw.stderr_lines) + "\n")
        worst = max(worst, rc)
    print(f"run_dev: {len(batches)} gateway(s), {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(f"clients: {TOTALS['passed']} passed, {TOTALS['failed']} failed", file=sys.stderr)
    return worst


if __name__ == "__main__":
    sys.exit(main())
