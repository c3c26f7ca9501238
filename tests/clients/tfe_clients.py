#!/usr/bin/env python3
"""Run real Terraform Enterprise API client libraries against tokengate.

Clients: ``pytfe`` (HashiCorp's python-tfe SDK) and ``terrasnek``; a few calls
that neither client has are made with plain ``urllib`` (client ``raw``).

    python tfe_clients.py --base-url http://127.0.0.1:PORT --fixture fx.json \
        [--only discovery,account,uploads,access,legacy,described,user,ttl]

The fixture is a JSON object:

    {"org": "acme", "team_id": "team-…", "other_team_id": "team-…",
     "user_id": "user-…", "user_token": "…", "org_token": "…",
     "team_token": "…", "workspace_id": "ws-…", "workspace_name": "demo"}

``user_token`` must belong to a user in the organization's owners team (it is
the token both clients act with). The run changes the gateway's state: it
regenerates and revokes the team and organization tokens of the fixture, so
run it against a throwaway gateway (``run_dev.py`` starts one).

Output: one JSON line per step on stdout,
``{"group":…, "client":…, "step":…, "ok":true|false, "detail":…}``
(``"skipped": true`` is added when a step could not run because an earlier
step it depends on failed). Exit status: 0 when every step passed, 1 when any
failed, 2 on bad arguments or fixture, 3 when the time budget ran out.

Only loopback addresses are ever contacted: the base URL must be on
127.0.0.0/8, ::1 or localhost, and every request either client makes is
checked against that before it is sent. Every HTTP call has a timeout
(``--http-timeout``, default 5 s) and the whole run is bounded
(``--budget``, default 50 s; a hard stop 5 s later).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import signal
import sys
import time
import traceback
import urllib.error
import urllib.request
from urllib.parse import urlsplit

GROUPS = ["discovery", "account", "uploads", "access", "legacy", "described", "user", "ttl"]
FIXTURE_KEYS = {
    "discovery": ["org", "user_token", "workspace_id", "workspace_name"],
    "account": ["org", "user_id", "user_token", "team_token"],
    "uploads": ["org", "user_token", "org_token", "workspace_id"],
    "access": ["org", "user_token", "team_id", "workspace_id"],
    "legacy": ["org", "user_token", "team_id", "team_token", "org_token"],
    "described": ["org", "user_token", "team_id"],
    "user": ["org", "user_token", "user_id"],
    "ttl": ["org", "user_token"],
}

HTTP_TIMEOUT = 5.0
VERBOSE = False

# --------------------------------------------------------------------------- #
# Loopback guard, timeouts, last-request record
# --------------------------------------------------------------------------- #

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"


class NotLoopback(Exception):
    pass


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def guard_url(url: str) -> None:
    host = urlsplit(str(url)).hostname
    if not is_loopback_host(host):
        raise NotLoopback(f"refusing to contact non-loopback URL {url}")


LAST_HTTP: dict = {}


def record_http(client: str, method: str, url: str, status: int, body: bytes | str) -> None:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    parts = urlsplit(str(url))
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    LAST_HTTP.clear()
    LAST_HTTP.update(client=client, method=method, path=path, status=status, body=body[:400])


def last_http_text() -> str:
    if not LAST_HTTP:
        return ""
    return (f"; last HTTP ({LAST_HTTP['client']}): {LAST_HTTP['method']} {LAST_HTTP['path']}"
            f" -> {LAST_HTTP['status']} {LAST_HTTP['body']}")


def install_requests_hooks() -> None:
    """terrasnek calls requests.get/post/... without a timeout: add one, and
    refuse anything that is not loopback."""
    import requests

    original = requests.sessions.Session.request
    if getattr(original, "_tokengate_wrapped", False):
        return

    def request(self, method, url, **kwargs):
        guard_url(url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = HTTP_TIMEOUT
        response = original(self, method, url, **kwargs)
        record_http("terrasnek", method.upper(), url, response.status_code, response.content)
        return response

    request._tokengate_wrapped = True
    requests.sessions.Session.request = request


# --------------------------------------------------------------------------- #
# Step bookkeeping
# --------------------------------------------------------------------------- #


class Check(Exception):
    """A result that came back but is wrong."""


class Skip(Exception):
    """A step that cannot run because something it needs failed earlier."""


class Runner:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.failed = 0
        self.passed = 0

    def emit(self, group, client, step, ok, detail, skipped=False):
        line = {"group": group, "client": client, "step": step, "ok": ok, "detail": detail}
        if skipped:
            line["skipped"] = True
        print(json.dumps(line, default=str), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def step(self, group, client, step, fn, *args):
        """Run fn(*args); it returns (detail, value) or a detail. Returns the
        value on success, None on failure."""
        if time.monotonic() > self.deadline:
            self.emit(group, client, step, False, "not run: time budget used up", skipped=True)
            return None
        LAST_HTTP.clear()
        try:
            result = fn(*args)
        except Skip as e:
            self.emit(group, client, step, False, f"not run: {e}", skipped=True)
            return None
        except Check as e:
            self.emit(group, client, step, False, f"{e}{last_http_text()}")
            return None
        except Exception as e:  # the client raised: that is the finding
            if VERBOSE:
                traceback.print_exc()
            self.emit(group, client, step, False, f"{describe_exception(e)}{last_http_text()}")
            return None
        if isinstance(result, tuple) and len(result) == 2:
            detail, value = result
        else:
            detail, value = result, True
        self.emit(group, client, step, True, detail)
        return value if value is not None else True


def describe_exception(e: Exception) -> str:
    name = f"{type(e).__module__}.{type(e).__name__}"
    status = getattr(e, "status", None)
    text = str(e)
    if status is not None:
        return f"{name} (status {status}): {text}"[:600]
    return f"{name}: {text}"[:600]


def need(value, what):
    if value is None:
        raise Skip(f"needs {what}, which an earlier step did not produce")
    return value


# --------------------------------------------------------------------------- #
# Plain HTTP (urllib) for probes and calls neither client has
# --------------------------------------------------------------------------- #


class Raw:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method, path, token=None, body=None, headers=None):
        url = self.base + path
        guard_url(url)
        hdrs = {"Accept": "application/vnd.api+json"}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/vnd.api+json"
        hdrs.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as resp:
                status, rheaders, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, rheaders, raw = e.code, dict(e.headers or {}), e.read()
        record_http("raw", method, url, status, raw)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return status, rheaders, parsed


class Env:
    def __init__(self, base, fx, stub_discovery):
        self.base = base.rstrip("/")
        self.fx = fx
        self.raw = Raw(base)
        self.stub_discovery = stub_discovery
        self._pytfe = {}
        self._terrasnek = None
        self._terrasnek_note = ""
        self._terrasnek_error = None

    # -- probes ---------------------------------------------------------------
    def probe(self, token) -> int:
        status, _, _ = self.raw.call("GET", f"/api/v2/organizations/{self.fx['org']}/workspaces", token=token)
        return status

    def expect_works(self, token, what):
        status = self.probe(token)
        if status != 200:
            raise Check(f"{what}: GET /api/v2/organizations/{self.fx['org']}/workspaces with it -> {status}, expected 200")
        return status

    def expect_revoked(self, token, what):
        status = self.probe(token)
        if status != 401:
            raise Check(f"{what}: GET /api/v2/organizations/{self.fx['org']}/workspaces with it -> {status}, expected 401")
        return status

    # -- clients --------------------------------------------------------------
    def pytfe(self, token=None):
        token = token or self.fx["user_token"]
        if token not in self._pytfe:
            from pytfe import TFEClient, TFEConfig

            client = TFEClient(TFEConfig(address=self.base, token=token, timeout=HTTP_TIMEOUT,
                                         max_retries=0, http2=False, verify_tls=True))
            sync = client._transport._sync

            def on_request(request):
                guard_url(str(request.url))

            def on_response(response):
                response.read()
                record_http("pytfe", response.request.method, str(response.request.url),
                            response.status_code, response.content)

            sync.event_hooks = {"request": [on_request], "response": [on_response]}
            self._pytfe[token] = client
        return self._pytfe[token]

    def build_terrasnek(self):
        """The real constructor: GET /.well-known/terraform.json, then set_org."""
        from terrasnek.api import TFC

        install_requests_hooks()
        api = TFC(self.fx["user_token"], url=self.base, verify=True, skip_version_check=True)
        api.set_org(self.fx["org"])
        return api

    def terrasnek(self):
        if self._terrasnek is not None:
            return self._terrasnek
        if self._terrasnek_error is not None and not self.stub_discovery:
            raise Skip(f"terrasnek client construction failed ({self._terrasnek_error})")
        try:
            self._terrasnek = self.build_terrasnek()
            return self._terrasnek
        except Exception as e:  # noqa: BLE001
            self._terrasnek_error = describe_exception(e)
            if not self.stub_discovery:
                raise Skip(f"terrasnek client construction failed ({self._terrasnek_error})")
        # Same client, but with the discovery document TFE serves, so the
        # remaining terrasnek calls are still exercised.
        from terrasnek.api import TFC

        real = TFC.well_known_paths
        TFC.well_known_paths = lambda self: {"tfe.v2": "/api/v2/", "modules.v1": "/api/registry/v1/modules/"}
        try:
            api = TFC(self.fx["user_token"], url=self.base, verify=True, skip_version_check=True)
            api.set_org(self.fx["org"])
        finally:
            TFC.well_known_paths = real
        self._terrasnek = api
        self._terrasnek_note = " [terrasnek built with a stubbed discovery document: the real one failed]"
        return api

    def tnote(self, detail):
        return f"{detail}{self._terrasnek_note}" if isinstance(detail, str) else detail


def expiry_naive_utc(days=30) -> dt.datetime:
    """A naive datetime, as SDK users typically pass it (no tzinfo)."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).replace(microsecond=0, tzinfo=None)


def same_instant_utc(got, want_naive_utc) -> bool:
    if got is None:
        return False
    if isinstance(got, str):
        got = dt.datetime.fromisoformat(got.replace("Z", "+00:00"))
    if got.tzinfo is not None:
        got = got.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return abs((got - want_naive_utc).total_seconds()) < 1


def fmt_created_by(tok) -> str:
    """pytfe's parsed created-by, and the raw relationship it came from."""
    raw = (tok.relationships.get("created-by") or {}).get("data") if hasattr(tok, "relationships") else None
    cb = tok.created_by
    parsed = None
    if cb is not None:
        for kind in ("user", "team", "organization"):
            if getattr(cb, kind, None) is not None:
                parsed = f"{kind}:{getattr(cb, kind).id}"
    return f"created-by parsed {parsed}, raw {json.dumps(raw)}"


def jsonapi_data(doc, what):
    if not isinstance(doc, dict) or "data" not in doc:
        raise Check(f"{what}: response has no top-level data: {str(doc)[:300]}")
    return doc["data"]


# --------------------------------------------------------------------------- #
# Groups
# --------------------------------------------------------------------------- #


def group_discovery(r: Runner, env: Env):
    g = "discovery"
    fx = env.fx

    def well_known():
        status, _, doc = env.raw.call("GET", "/.well-known/terraform.json")
        if status != 200:
            raise Check(f"GET /.well-known/terraform.json (no token) -> {status}, expected 200")
        problems = []
        if not isinstance(doc, dict):
            raise Check(f"body is not a JSON object: {str(doc)[:200]}")
        if "tfe.v2" not in doc:
            problems.append("no top-level \"tfe.v2\"" + (" (it is wrapped in data/meta)" if "data" in doc else ""))
        elif doc["tfe.v2"] != "/api/v2/":
            problems.append(f"\"tfe.v2\" is {doc['tfe.v2']!r}, expected \"/api/v2/\" (terrasnek drops the last character)")
        if "modules.v1" not in doc:
            problems.append("no top-level \"modules.v1\" (terrasnek requires it)")
        if problems:
            raise Check("; ".join(problems) + f"; body: {json.dumps(doc)[:300]}")
        return f"200 {json.dumps(doc)}"

    r.step(g, "raw", "GET /.well-known/terraform.json", well_known)

    def ping():
        status, headers, doc = env.raw.call("GET", "/api/v2/ping", token=fx["user_token"])
        if status != 200:
            raise Check(f"GET /api/v2/ping -> {status}, expected 200")
        lower = {k.lower(): v for k, v in headers.items()}
        return f"200; TFP-API-Version: {lower.get('tfp-api-version')!r}, X-TFE-Version: {lower.get('x-tfe-version')!r}"

    r.step(g, "raw", "GET /api/v2/ping (what go-tfe calls at construction)", ping)

    def pytfe_construct():
        env.pytfe()
        return "TFEClient(TFEConfig(...)) makes no HTTP request"

    r.step(g, "pytfe", "TFEClient()", pytfe_construct)

    def terrasnek_construct():
        env.build_terrasnek()
        return "TFC(token, url, skip_version_check=True) + set_org: GET /.well-known/terraform.json ok"

    r.step(g, "terrasnek", "TFC() + set_org()", terrasnek_construct)

    def pytfe_ws_by_name():
        ws = env.pytfe().workspaces.read(fx["workspace_name"], organization=fx["org"])
        if ws.id != fx["workspace_id"]:
            raise Check(f"id {ws.id!r}, expected {fx['workspace_id']!r}")
        return f"id {ws.id}, name {ws.name}"

    r.step(g, "pytfe", "workspaces.read(name)", pytfe_ws_by_name)

    def pytfe_ws_by_id():
        ws = env.pytfe().workspaces.read_by_id(fx["workspace_id"])
        if ws.name != fx["workspace_name"]:
            raise Check(f"name {ws.name!r}, expected {fx['workspace_name']!r}")
        return f"id {ws.id}, name {ws.name}"

    r.step(g, "pytfe", "workspaces.read_by_id()", pytfe_ws_by_id)

    def terrasnek_ws_by_name():
        doc = env.terrasnek().workspaces.show(workspace_name=fx["workspace_name"])
        data = jsonapi_data(doc, "workspaces.show")
        if data.get("id") != fx["workspace_id"]:
            raise Check(f"id {data.get('id')!r}, expected {fx['workspace_id']!r}")
        return env.tnote(f"id {data['id']}")

    r.step(g, "terrasnek", "workspaces.show(workspace_name=)", terrasnek_ws_by_name)

    def terrasnek_ws_by_id():
        doc = env.terrasnek().workspaces.show(workspace_id=fx["workspace_id"])
        data = jsonapi_data(doc, "workspaces.show")
        name = (data.get("attributes") or {}).get("name")
        if name != fx["workspace_name"]:
            raise Check(f"name {name!r}, expected {fx['workspace_name']!r}")
        return env.tnote(f"name {name}")

    r.step(g, "terrasnek", "workspaces.show(workspace_id=)", terrasnek_ws_by_id)


def group_account(r: Runner, env: Env):
    g = "account"
    fx = env.fx

    def pytfe_user():
        u = env.pytfe().users.read_current()
        if u.id != fx["user_id"]:
            raise Check(f"id {u.id!r}, expected {fx['user_id']!r}")
        if u.is_service_account:
            raise Check("is-service-account true for a user token")
        return f"id {u.id}, username {u.username!r}, email {u.email!r}"

    r.step(g, "pytfe", "users.read_current() [user token]", pytfe_user)

    def pytfe_team():
        u = env.pytfe(fx["team_token"]).users.read_current()
        if not u.is_service_account:
            raise Check(f"is-service-account is {u.is_service_account!r} for a team token (TFE: true)")
        return f"id {u.id}, username {u.username!r}, is-service-account true"

    r.step(g, "pytfe", "users.read_current() [team token]", pytfe_team)

    def terrasnek_account():
        doc = env.terrasnek().account.show()
        data = jsonapi_data(doc, "account.show")
        if data.get("id") != fx["user_id"]:
            raise Check(f"id {data.get('id')!r}, expected {fx['user_id']!r}")
        if data.get("type") != "users":
            raise Check(f"type {data.get('type')!r}, expected 'users'")
        return env.tnote(f"id {data['id']}")

    r.step(g, "terrasnek", "account.show() [user token]", terrasnek_account)


def group_access(r: Runner, env: Env):
    g = "access"
    fx = env.fx
    from pytfe.errors import NotFound
    from pytfe.models.team_workspace_access import (
        TeamWorkspaceAccessAddOptions,
        TeamWorkspaceAccessType,
        TeamWorkspaceAccessUpdateOptions,
        TeamWorkspaceRunsPermission,
        TeamWorkspaceSentinelMocksPermission,
        TeamWorkspaceStateVersionsPermission,
        TeamWorkspaceVariablesPermission,
    )

    def add():
        c = env.pytfe()
        a = c.team_workspace_accesses.add(TeamWorkspaceAccessAddOptions(
            team_id=fx["team_id"], workspace_id=fx["workspace_id"], access=TeamWorkspaceAccessType.READ))
        problems = []
        if not a.id:
            problems.append("no id")
        if a.access != TeamWorkspaceAccessType.READ:
            problems.append(f"access {a.access!r}")
        if a.team_id != fx["team_id"]:
            problems.append(f"relationships.team {a.team_id!r}")
        if a.workspace_id != fx["workspace_id"]:
            problems.append(f"relationships.workspace {a.workspace_id!r}")
        if problems:
            raise Check("; ".join(problems))
        return f"id {a.id}, access read", a.id

    twa = r.step(g, "pytfe", "team_workspace_accesses.add(read)", add)

    def lst():
        ids = [a.id for a in env.pytfe().team_workspace_accesses.list(fx["workspace_id"])]
        if need(twa, "the access id") not in ids:
            raise Check(f"{twa} not in {ids}")
        return f"{len(ids)} entries, includes {twa}"

    r.step(g, "pytfe", "team_workspace_accesses.list(workspace)", lst)

    def read():
        a = env.pytfe().team_workspace_accesses.read(need(twa, "the access id"))
        if a.id != twa or a.access != TeamWorkspaceAccessType.READ:
            raise Check(f"id {a.id!r} access {a.access!r}")
        return f"id {a.id}, access read, team {a.team_id}, workspace {a.workspace_id}"

    r.step(g, "pytfe", "team_workspace_accesses.read()", read)

    def update_custom():
        a = env.pytfe().team_workspace_accesses.update(need(twa, "the access id"), TeamWorkspaceAccessUpdateOptions(
            access=TeamWorkspaceAccessType.CUSTOM,
            runs=TeamWorkspaceRunsPermission.PLAN,
            variables=TeamWorkspaceVariablesPermission.READ,
            state_versions=TeamWorkspaceStateVersionsPermission.READ_OUTPUTS,
            sentinel_mocks=TeamWorkspaceSentinelMocksPermission.NONE,
            workspace_locking=True,
            run_tasks=False,
        ))
        want = {"access": "custom", "runs": "plan", "variables": "read", "state_versions": "read-outputs",
                "sentinel_mocks": "none", "workspace_locking": True, "run_tasks": False}
        got = {k: (getattr(a, k).value if hasattr(getattr(a, k), "value") else getattr(a, k)) for k in want}
        if got != want:
            raise Check(f"echoed {got}, expected {want}")
        return f"custom: {got}"

    r.step(g, "pytfe", "team_workspace_accesses.update(custom)", update_custom)

    def remove():
        c = env.pytfe()
        c.team_workspace_accesses.remove(need(twa, "the access id"))
        try:
            c.team_workspace_accesses.read(twa)
        except NotFound:
            return "removed; read -> 404"
        raise Check("read after remove did not raise NotFound")

    r.step(g, "pytfe", "team_workspace_accesses.remove()", remove)

    # -- terrasnek ------------------------------------------------------------
    def t_add():
        doc = env.terrasnek().team_access.add_team_access({"data": {
            "type": "team-workspaces",
            "attributes": {"access": "read"},
            "relationships": {
                "team": {"data": {"type": "teams", "id": fx["team_id"]}},
                "workspace": {"data": {"type": "workspaces", "id": fx["workspace_id"]}},
            }}})
        data = jsonapi_data(doc, "add_team_access")
        if (data.get("attributes") or {}).get("access") != "read":
            raise Check(f"attributes {data.get('attributes')}")
        return env.tnote(f"id {data.get('id')}"), data.get("id")

    ttwa = r.step(g, "terrasnek", "team_access.add_team_access(read)", t_add)

    def t_list():
        doc = env.terrasnek().team_access.list(
            filters=[{"keys": ["workspace", "id"], "value": fx["workspace_id"]}])
        ids = [d.get("id") for d in jsonapi_data(doc, "team_access.list")]
        if need(ttwa, "the access id") not in ids:
            raise Check(f"{ttwa} not in {ids}")
        return env.tnote(f"{len(ids)} entries, includes {ttwa}")

    r.step(g, "terrasnek", "team_access.list(filter[workspace][id])", t_list)

    def t_show():
        data = jsonapi_data(env.terrasnek().team_access.show(need(ttwa, "the access id")), "team_access.show")
        if data.get("id") != ttwa:
            raise Check(f"id {data.get('id')!r}")
        return env.tnote(f"id {ttwa}, access {(data.get('attributes') or {}).get('access')}")

    r.step(g, "terrasnek", "team_access.show()", t_show)

    def t_update():
        attrs = {"access": "custom", "runs": "apply", "variables": "write", "state-versions": "read",
                 "sentinel-mocks": "read", "workspace-locking": False, "run-tasks": True}
        doc = env.terrasnek().team_access.update(need(ttwa, "the access id"),
                                                 {"data": {"type": "team-workspaces", "attributes": attrs}})
        got = jsonapi_data(doc, "team_access.update").get("attributes") or {}
        diff = {k: got.get(k) for k in attrs if got.get(k) != attrs[k]}
        if diff:
            raise Check(f"not echoed as sent: {diff}")
        return env.tnote("custom permissions echoed")

    r.step(g, "terrasnek", "team_access.update(custom)", t_update)

    def t_remove():
        from terrasnek.exceptions import TFCHTTPNotFound

        api = env.terrasnek()
        api.team_access.remove_team_access(need(ttwa, "the access id"))
        try:
            api.team_access.show(ttwa)
        except TFCHTTPNotFound:
            return env.tnote("removed (DELETE body 'null'); show -> 404")
        raise Check("show after remove did not raise TFCHTTPNotFound")

    r.step(g, "terrasnek", "team_access.remove_team_access()", t_remove)


def group_legacy(r: Runner, env: Env):
    g = "legacy"
    fx = env.fx
    from pytfe.errors import NotFound
    from pytfe.models.organization_token import (
        OrganizationTokenCreateOptions,
        OrganizationTokenDeleteOptions,
        OrganizationTokenReadOptions,
        TokenType,
    )
    from pytfe.models.team_token import TeamTokenCreateOptions

    team = fx["team_id"]

    # -- team token, pytfe ----------------------------------------------------
    def create_by_org():
        if not fx.get("org_tokens_manage_team_tokens", True):
            # tokengate's default (token_api.org_tokens_manage_team_tokens:
            # false): an organization token never mints a team token.
            try:
                env.pytfe(fx["org_token"]).team_tokens.create(team)
            except NotFound:
                return "404: organization tokens do not manage team tokens (tokengate's default)"
            raise Check("an organization token minted a team token although the gateway refuses that by default")
        t = env.pytfe(fx["org_token"]).team_tokens.create(team)
        if not t.token:
            raise Check("no token in the response")
        cb = t.created_by
        if cb is None or cb.organization is None:
            raise Check(f"created by the organization token, but pytfe parsed no organization: {fmt_created_by(t)} "
                        "(pytfe understands only users/teams/organizations)")
        env.expect_works(t.token, "the new team token")
        return f"id {t.id}; {fmt_created_by(t)}"

    r.step(g, "pytfe", "team_tokens.create(team) [org token as caller]: created-by", create_by_org)

    def create():
        t = env.pytfe().team_tokens.create(team)
        if not t.token or not (t.id or "").startswith("at-"):
            raise Check(f"id {t.id!r}, token present: {bool(t.token)}")
        if t.team is not None and t.team.id != team:
            raise Check(f"relationships.team {t.team.id!r}")
        env.expect_works(t.token, "the new team token")
        return f"id {t.id}; new token works", t

    t1 = r.step(g, "pytfe", "team_tokens.create(team)", create)

    def replaced():
        need(t1, "a created team token")
        env.expect_revoked(fx["team_token"], "the fixture's team token after regenerate")
        return "previous team token -> 401"

    r.step(g, "pytfe", "team_tokens.create() replaces the previous token", replaced)

    exp = expiry_naive_utc()

    def create_exp():
        t = env.pytfe().team_tokens.create_with_options(team, TeamTokenCreateOptions(expired_at=exp))
        if not t.token:
            raise Check("no token in the response")
        if not same_instant_utc(t.expired_at, exp):
            raise Check(f"expired-at {t.expired_at!r}, sent naive {exp.isoformat()} (meant as UTC)")
        env.expect_works(t.token, "the new team token")
        if t1:
            env.expect_revoked(t1.token, "the team token it replaced")
        return f"id {t.id}; sent expired-at {exp.isoformat()!r} (no zone); got {t.expired_at.isoformat()}", t

    t2 = r.step(g, "pytfe", "team_tokens.create_with_options(expired_at naive, no description)", create_exp)
    exp_aware = exp.replace(tzinfo=dt.timezone.utc)

    def create_exp_aware():
        t = env.pytfe().team_tokens.create_with_options(team, TeamTokenCreateOptions(expired_at=exp_aware))
        if not same_instant_utc(t.expired_at, exp):
            raise Check(f"expired-at {t.expired_at!r}, sent {exp_aware.isoformat()}")
        env.expect_works(t.token, "the new team token")
        prev = t2 or t1
        if prev:
            env.expect_revoked(prev.token, "the team token it replaced")
        return f"id {t.id}; sent expired-at with zone (pydantic: ...Z); got {t.expired_at.isoformat()}", t

    t3 = r.step(g, "pytfe", "team_tokens.create_with_options(expired_at UTC-aware, no description)", create_exp_aware)

    def read():
        cur = need(t3 or t2 or t1, "a created team token")
        t = env.pytfe().team_tokens.read(team)
        if t.id != cur.id:
            raise Check(f"id {t.id!r}, expected {cur.id!r}")
        if t.token:
            raise Check("read returned the secret token")
        return f"id {t.id}, token null, {fmt_created_by(t)}"

    r.step(g, "pytfe", "team_tokens.read(team)", read)

    def delete():
        cur = need(t3 or t2 or t1, "a created team token")
        c = env.pytfe()
        c.team_tokens.delete(team)
        env.expect_revoked(cur.token, "the deleted team token")
        try:
            c.team_tokens.read(team)
        except NotFound:
            return "deleted; token -> 401; read -> 404"
        raise Check("read after delete did not raise NotFound")

    r.step(g, "pytfe", "team_tokens.delete(team)", delete)

    # -- team token, terrasnek ------------------------------------------------
    def t_create():
        doc = env.terrasnek().team_tokens.create(team)
        data = jsonapi_data(doc, "team_tokens.create")
        token = (data.get("attributes") or {}).get("token")
        if not token:
            raise Check(f"no attributes.token: {json.dumps(data)[:300]}")
        env.expect_works(token, "the new team token")
        return env.tnote(f"id {data.get('id')} (POST body '{{}}'); new token works"), token

    tt1 = r.step(g, "terrasnek", "team_tokens.create(team)", t_create)

    def t_create_payload():
        when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=30)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        doc = env.terrasnek().team_tokens.create(team, payload={"data": {
            "type": "authentication-token", "attributes": {"expired-at": stamp}}})
        data = jsonapi_data(doc, "team_tokens.create")
        attrs = data.get("attributes") or {}
        if not attrs.get("token"):
            raise Check("no attributes.token")
        if not same_instant_utc(attrs.get("expired-at"), when.replace(tzinfo=None)):
            raise Check(f"expired-at {attrs.get('expired-at')!r}, sent {stamp}")
        env.expect_works(attrs["token"], "the new team token")
        if tt1:
            env.expect_revoked(tt1, "the team token it replaced")
        return env.tnote(f"id {data.get('id')}, expired-at {attrs.get('expired-at')}"), attrs["token"]

    tt2 = r.step(g, "terrasnek", "team_tokens.create(team, payload with expired-at)", t_create_payload)

    def t_destroy():
        cur = need(tt2 or tt1, "a created team token")
        env.terrasnek().team_tokens.destroy(team)
        env.expect_revoked(cur, "the destroyed team token")
        return env.tnote("DELETE (body 'null') ok; token -> 401")

    r.step(g, "terrasnek", "team_tokens.destroy(team)", t_destroy)

    # -- organization token, pytfe ---------------------------------------------
    org = fx["org"]

    def o_create():
        t = env.pytfe().organization_tokens.create(org)
        if not t.token or not (t.id or "").startswith("at-"):
            raise Check(f"id {t.id!r}, token present: {bool(t.token)}")
        env.expect_works(t.token, "the new organization token")
        return f"id {t.id}; new token works", t

    o1 = r.step(g, "pytfe", "organization_tokens.create(org)", o_create)

    def o_replaced():
        need(o1, "a created organization token")
        env.expect_revoked(fx["org_token"], "the fixture's organization token after regenerate")
        return "previous organization token -> 401"

    r.step(g, "pytfe", "organization_tokens.create() replaces the previous token", o_replaced)

    def o_create_exp():
        t = env.pytfe().organization_tokens.create_with_options(org, OrganizationTokenCreateOptions(expired_at=exp))
        if not same_instant_utc(t.expired_at, exp):
            raise Check(f"expired-at {t.expired_at!r}, sent naive {exp.isoformat()} (meant as UTC)")
        env.expect_works(t.token, "the new organization token")
        if o1:
            env.expect_revoked(o1.token, "the organization token it replaced")
        return f"id {t.id}; sent expired-at {exp.isoformat()!r} (no zone); got {t.expired_at.isoformat()}", t

    o2 = r.step(g, "pytfe", "organization_tokens.create_with_options(expired_at naive)", o_create_exp)

    def o_create_exp_aware():
        t = env.pytfe().organization_tokens.create_with_options(org, OrganizationTokenCreateOptions(expired_at=exp_aware))
        if not same_instant_utc(t.expired_at, exp):
            raise Check(f"expired-at {t.expired_at!r}, sent {exp_aware.isoformat()}")
        env.expect_works(t.token, "the new organization token")
        prev = o2 or o1
        if prev:
            env.expect_revoked(prev.token, "the organization token it replaced")
        return f"id {t.id}; sent expired-at {exp_aware.isoformat()!r}; got {t.expired_at.isoformat()}", t

    o3 = r.step(g, "pytfe", "organization_tokens.create_with_options(expired_at UTC-aware)", o_create_exp_aware)
    # The organization token that should be valid now (a step below may replace it).
    cur_org = {"tok": o3 or o2 or o1}

    def o_read():
        cur = need(cur_org["tok"], "a created organization token")
        t = env.pytfe().organization_tokens.read(org)
        if t.id != cur.id:
            raise Check(f"id {t.id!r}, expected {cur.id!r}")
        if t.token:
            raise Check("read returned the secret token")
        return f"id {t.id}, token empty"

    r.step(g, "pytfe", "organization_tokens.read(org)", o_read)

    audit = OrganizationTokenCreateOptions(token_type=TokenType.AUDIT_TRAILS)

    audit_state = {"tok": None}

    def a_create():
        cur = need(cur_org["tok"], "a created organization token")
        try:
            t = env.pytfe().organization_tokens.create_with_options(org, audit)
        except NotFound:
            # A token type the gateway does not serve: 404, nothing changed.
            env.expect_works(cur.token, "the organization token after POST ?token=audit-trails")
            return f"404 (no audit-trail tokens); the organization token {cur.id} still works"
        audit_state["tok"] = t
        if not t.token:
            raise Check("no token in the response")
        if env.probe(cur.token) != 200:
            # The gateway treated it as a new organization token.
            cur_org["tok"] = t
            raise Check(f"POST ?token=audit-trails replaced the organization token: the old one ({cur.id}) now gets 401, "
                        f"new id {t.id} (the query parameter is ignored)")
        if t.id == cur.id:
            raise Check(f"returned the organization token's id {t.id}")
        return f"id {t.id}, distinct from the organization token {cur.id}, which still works", t

    r.step(g, "pytfe", "organization_tokens.create_with_options(token=audit-trails)", a_create)
    a1 = audit_state["tok"]

    def a_scope():
        if a1 is None:
            return "no audit-trail token exists, so none can reach workspaces"
        t = a1
        status = env.probe(t.token)
        if status == 200:
            raise Check("the audit-trail token can list workspaces (TFE: audit-trail tokens only read /api/v2/organization/audit-trail)")
        return f"audit-trail token on workspaces -> {status}"

    r.step(g, "pytfe", "audit-trail token is not a general organization token", a_scope)

    def a_read():
        c = env.pytfe()
        opts = OrganizationTokenReadOptions(token_type=TokenType.AUDIT_TRAILS)
        if a1 is None:
            # No audit-trail token could be made: TFE would answer 404 here.
            try:
                got = c.organization_tokens.read_with_options(org, opts)
            except NotFound:
                return "no audit-trail token exists: 404"
            cur = cur_org["tok"]
            same = cur is not None and got.id == cur.id
            raise Check(f"no audit-trail token exists, yet it returned {got.id}"
                        + (" (the organization token: the query parameter is ignored)" if same else ""))
        got = c.organization_tokens.read_with_options(org, opts)
        if got.id != a1.id:
            raise Check(f"id {got.id!r}, expected the audit-trail token {a1.id!r}")
        return f"id {got.id}"

    r.step(g, "pytfe", "organization_tokens.read_with_options(token=audit-trails)", a_read)

    def a_delete():
        cur = need(cur_org["tok"], "a created organization token")
        c = env.pytfe()
        opts = OrganizationTokenDeleteOptions(token_type=TokenType.AUDIT_TRAILS)
        if a1 is None:
            try:
                c.organization_tokens.delete_with_options(org, opts)
            except NotFound:
                return "no audit-trail token exists: 404"
            if env.probe(cur.token) != 200:
                cur_org["tok"] = None
                raise Check(f"no audit-trail token exists, and DELETE ?token=audit-trails revoked the organization token {cur.id}")
            return "no audit-trail token exists; DELETE answered 2xx but the organization token still works"
        c.organization_tokens.delete_with_options(org, opts)
        env.expect_works(cur.token, "the organization token after deleting the audit-trail token")
        env.expect_revoked(a1.token, "the deleted audit-trail token")
        try:
            c.organization_tokens.read_with_options(org, OrganizationTokenReadOptions(token_type=TokenType.AUDIT_TRAILS))
        except NotFound:
            return f"audit-trail token {a1.id} deleted; organization token still works"
        raise Check("read of the audit-trail token after delete did not raise NotFound")

    r.step(g, "pytfe", "organization_tokens.delete_with_options(token=audit-trails)", a_delete)

    def o_delete():
        c = env.pytfe()
        note = ""
        if cur_org["tok"] is None:
            cur_org["tok"] = c.organization_tokens.create(org)
            note = " (re-created first: an earlier step lost it)"
        cur = cur_org["tok"]
        c.organization_tokens.delete(org)
        env.expect_revoked(cur.token, "the deleted organization token")
        try:
            c.organization_tokens.read(org)
        except NotFound:
            return "deleted; token -> 401; read -> 404" + note
        raise Check("read after delete did not raise NotFound")

    r.step(g, "pytfe", "organization_tokens.delete(org)", o_delete)

    # -- organization token, terrasnek -------------------------------------------
    def to_create():
        data = jsonapi_data(env.terrasnek().org_tokens.create(), "org_tokens.create")
        token = (data.get("attributes") or {}).get("token")
        if not token:
            raise Check(f"no attributes.token: {json.dumps(data)[:300]}")
        env.expect_works(token, "the new organization token")
        return env.tnote(f"id {data.get('id')} (POST body '{{}}'); new token works"), token

    to1 = r.step(g, "terrasnek", "org_tokens.create()", to_create)

    def to_destroy():
        cur = need(to1, "a created organization token")
        env.terrasnek().org_tokens.destroy()
        env.expect_revoked(cur, "the destroyed organization token")
        return env.tnote("DELETE (body 'null') ok; token -> 401")

    r.step(g, "terrasnek", "org_tokens.destroy()", to_destroy)


def group_described(r: Runner, env: Env):
    g = "described"
    fx = env.fx
    team = fx["team_id"]
    org = fx["org"]
    from pytfe.errors import NotFound
    from pytfe.models.team_token import TeamTokenCreateOptions, TeamTokenListOptions

    def legacy():
        t = env.pytfe().team_tokens.create(team)
        env.expect_works(t.token, "the legacy team token")
        return f"legacy token {t.id}", t

    leg = r.step(g, "pytfe", "team_tokens.create(team) [legacy, to check coexistence]", legacy)

    exp = expiry_naive_utc()
    # UTC-aware here (sent as ...Z); the naive form is checked in the legacy group.
    exp_aware = exp.replace(tzinfo=dt.timezone.utc)
    desc_a, desc_b = "tokengate-driver-a", "tokengate-driver-b"

    def create_a():
        t = env.pytfe().team_tokens.create_with_options(team, TeamTokenCreateOptions(description=desc_a, expired_at=exp_aware))
        problems = []
        if not t.token:
            problems.append("no token")
        if t.description != desc_a:
            problems.append(f"description {t.description!r}")
        if not same_instant_utc(t.expired_at, exp):
            problems.append(f"expired-at {t.expired_at!r} (sent {exp.isoformat()}Z)")
        if t.team is None or t.team.id != team:
            problems.append(f"relationships.team {getattr(t.team, 'id', None)!r}")
        if problems:
            raise Check("; ".join(problems))
        env.expect_works(t.token, "described token a")
        return f"id {t.id}, description {desc_a!r}, expired-at {t.expired_at.isoformat()}; works", t

    a = r.step(g, "pytfe", "team_tokens.create_with_options(description, expired_at)", create_a)

    def create_b():
        t = env.pytfe().team_tokens.create_with_options(team, TeamTokenCreateOptions(description=desc_b))
        if not t.token or t.description != desc_b:
            raise Check(f"token present {bool(t.token)}, description {t.description!r}")
        env.expect_works(t.token, "described token b")
        if a:
            env.expect_works(a.token, "described token a after creating b")
        if leg:
            env.expect_works(leg.token, "the legacy team token after creating described tokens")
        return f"id {t.id}; a, b and the legacy token all work", t

    b = r.step(g, "pytfe", "team_tokens.create_with_options(description) again: tokens coexist", create_b)

    def dup():
        from pytfe.errors import TFEError

        try:
            t = env.pytfe().team_tokens.create_with_options(team, TeamTokenCreateOptions(description=desc_a))
        except TFEError as e:
            if e.status == 422:
                return "422 for a duplicate description on the same team"
            raise
        raise Check(f"a second token with description {desc_a!r} was created ({t.id}); TFE answers 422")

    r.step(g, "pytfe", "duplicate description on one team is refused", dup)

    def wanted():
        """Ids of a and b; when they could not be created the list call is
        still made (its answer is the finding) and the content check fails."""
        return [t.id for t in (a, b) if t]

    def not_created():
        if not (a and b):
            raise Check("the list call answered, but tokens a and b could not be created, so its content is unchecked")

    def per_team():
        ids_wanted = wanted()
        status, _, doc = env.raw.call("GET", f"/api/v2/teams/{team}/authentication-tokens", token=fx["user_token"])
        if status != 200:
            raise Check(f"GET /api/v2/teams/{team}/authentication-tokens -> {status}, expected 200")
        data = jsonapi_data(doc, "per-team list")
        not_created()
        ids = [d.get("id") for d in data]
        missing = [i for i in ids_wanted if i not in ids]
        leaked = [d.get("id") for d in data if (d.get("attributes") or {}).get("token")]
        if missing or leaked:
            raise Check(f"missing {missing}; secrets in {leaked}")
        return f"{len(ids)} tokens, includes a and b, no secrets"

    r.step(g, "raw", "GET /teams/{id}/authentication-tokens (per-team list; in neither client)", per_team)

    def org_list():
        ids_wanted = wanted()
        toks = list(env.pytfe().team_tokens.list(org))
        not_created()
        ids = [t.id for t in toks]
        missing = [i for i in ids_wanted if i not in ids]
        leaked = [t.id for t in toks if t.token]
        if missing or leaked:
            raise Check(f"missing {missing}; secrets in {leaked}; got {ids}")
        descs = {t.id: t.description for t in toks}
        return f"{len(ids)} tokens; descriptions {descs}"

    r.step(g, "pytfe", "team_tokens.list(org)", org_list)

    def paging():
        ids_wanted = set(wanted())
        status, _, doc = env.raw.call("GET", f"/api/v2/organizations/{org}/team-tokens?page%5Bnumber%5D=1&page%5Bsize%5D=1",
                                      token=fx["user_token"])
        if status != 200:
            raise Check(f"page 1 of size 1 -> {status}")
        pag = ((doc or {}).get("meta") or {}).get("pagination")
        if not isinstance(pag, dict):
            raise Check("no meta.pagination (pytfe then reads only the first page)")
        not_created()
        if len(jsonapi_data(doc, "page 1")) != 1:
            raise Check(f"page[size]=1 returned {len(doc['data'])} items")
        ids = [t.id for t in env.pytfe().team_tokens.list(org, TeamTokenListOptions(page_size=1))]
        if len(ids) != len(set(ids)):
            raise Check(f"duplicates across pages: {ids}")
        if not ids_wanted <= set(ids):
            raise Check(f"missing {ids_wanted - set(ids)} when following pages of 1; got {ids}; meta.pagination {pag}")
        return f"{len(ids)} tokens over pages of 1; meta.pagination {pag}"

    r.step(g, "pytfe", "team_tokens.list(org, page_size=1) follows meta.pagination", paging)

    def query():
        got = [t.id for t in env.pytfe().team_tokens.list(org, TeamTokenListOptions(query="no-such-token-zz9"))]
        not_created()
        if got:
            raise Check(f"q=no-such-token-zz9 returned {got}")
        return "q with no match -> empty list"

    r.step(g, "pytfe", "team_tokens.list(org, query=)", query)

    def sort():
        asc = [t.id for t in env.pytfe().team_tokens.list(org, TeamTokenListOptions(sort="created-at"))]
        desc = [t.id for t in env.pytfe().team_tokens.list(org, TeamTokenListOptions(sort="-created-at"))]
        not_created()
        ia, ib = a.id, b.id
        if ia not in asc or ib not in asc or ia not in desc or ib not in desc:
            raise Check(f"a/b missing: asc {asc}, desc {desc}")
        if not (asc.index(ia) < asc.index(ib) and desc.index(ib) < desc.index(ia)):
            raise Check(f"order wrong: sort=created-at {asc}; sort=-created-at {desc}")
        return "sort=created-at and sort=-created-at order a and b"

    r.step(g, "pytfe", "team_tokens.list(org, sort=)", sort)

    def read_by_id():
        if a is None:
            # Still exercise GET /authentication-tokens/:id, with the legacy token's id.
            t = env.pytfe().team_tokens.read_by_id(need(leg, "a legacy team token").id)
            if t.id != leg.id or t.token:
                raise Check(f"id {t.id!r}, token present {bool(t.token)}")
            raise Check(f"read_by_id works for the legacy token {leg.id}, but token a could not be created")
        t = env.pytfe().team_tokens.read_by_id(a.id)
        if t.id != a.id or t.description != desc_a or t.token:
            raise Check(f"id {t.id!r}, description {t.description!r}, token present {bool(t.token)}")
        return f"id {t.id}, description {t.description!r}, {fmt_created_by(t)}"

    r.step(g, "pytfe", "team_tokens.read_by_id(id)", read_by_id)

    def delete_by_id():
        c = env.pytfe()
        if a is None:
            # Still exercise DELETE /authentication-tokens/:id, on the legacy token.
            c.team_tokens.delete_by_id(need(leg, "a legacy team token").id)
            env.expect_revoked(leg.token, "the legacy token deleted by id")
            raise Check(f"delete_by_id works for the legacy token {leg.id}, but token a could not be created")
        c.team_tokens.delete_by_id(a.id)
        env.expect_revoked(a.token, "deleted described token a")
        if b:
            env.expect_works(b.token, "described token b after deleting a")
        if leg:
            env.expect_works(leg.token, "the legacy token after deleting a")
        try:
            c.team_tokens.read_by_id(a.id)
        except NotFound:
            return "a -> 401, b and legacy still work, read_by_id(a) -> 404"
        raise Check("read_by_id after delete did not raise NotFound")

    r.step(g, "pytfe", "team_tokens.delete_by_id(id)", delete_by_id)

    def cleanup():
        c = env.pytfe()
        c.team_tokens.delete_by_id(need(b, "token b").id)
        env.expect_revoked(b.token, "deleted described token b")
        return "b deleted"

    r.step(g, "pytfe", "team_tokens.delete_by_id(id) [cleanup]", cleanup)


def group_user(r: Runner, env: Env):
    g = "user"
    fx = env.fx
    uid = fx["user_id"]

    def lst():
        data = jsonapi_data(env.terrasnek().user_tokens.list(uid), "user_tokens.list")
        if not isinstance(data, list):
            raise Check(f"data is {type(data).__name__}, expected a list")
        leaked = [d.get("id") for d in data if (d.get("attributes") or {}).get("token")]
        if leaked:
            raise Check(f"secrets in {leaked}")
        return env.tnote(f"{len(data)} tokens: {[d.get('id') for d in data]}")

    r.step(g, "terrasnek", "user_tokens.list(user)", lst)

    def create():
        when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=30)
        doc = env.terrasnek().user_tokens.create(uid, {"data": {"type": "authentication-tokens", "attributes": {
            "description": "tokengate-driver", "expired-at": when.strftime("%Y-%m-%dT%H:%M:%S.000Z")}}})
        data = jsonapi_data(doc, "user_tokens.create")
        attrs = data.get("attributes") or {}
        if not attrs.get("token") or attrs.get("description") != "tokengate-driver":
            raise Check(f"attributes {attrs}")
        env.expect_works(attrs["token"], "the new user token")
        env.expect_works(fx["user_token"], "the user's existing token after creating another")
        return env.tnote(f"id {data.get('id')}; works; the user's other token still works"), (data.get("id"), attrs["token"])

    created = r.step(g, "terrasnek", "user_tokens.create(user, description, expired-at)", create)

    def show():
        if created is None:
            # Still exercise GET /authentication-tokens/:id, with the acting
            # token's own id (tokengate ids are "at-" + the token's first 14
            # characters, docs/TOKENS.md).
            own = "at-" + fx["user_token"][:14]
            data = jsonapi_data(env.terrasnek().user_tokens.show(own), "user_tokens.show")
            raise Check(f"show works for the user's own token {own} ({data.get('type')}), "
                        "but no token could be created to check it fully")
        tid, _ = created
        data = jsonapi_data(env.terrasnek().user_tokens.show(tid), "user_tokens.show")
        attrs = data.get("attributes") or {}
        if data.get("id") != tid or attrs.get("description") != "tokengate-driver" or attrs.get("token"):
            raise Check(f"id {data.get('id')!r}, attributes {attrs}")
        return env.tnote(f"id {tid}, token null")

    r.step(g, "terrasnek", "user_tokens.show(id)", show)

    def listed():
        tid, _ = need(created, "a created user token")
        ids = [d.get("id") for d in jsonapi_data(env.terrasnek().user_tokens.list(uid), "user_tokens.list")]
        if tid not in ids:
            raise Check(f"{tid} not in {ids}")
        return env.tnote(f"includes {tid}")

    r.step(g, "terrasnek", "user_tokens.list(user) includes the new token", listed)

    def destroy():
        tid, token = need(created, "a created user token")
        env.terrasnek().user_tokens.destroy(tid)
        env.expect_revoked(token, "the destroyed user token")
        env.expect_works(fx["user_token"], "the user's other token")
        return env.tnote("DELETE (body 'null') ok; token -> 401; the other token still works")

    r.step(g, "terrasnek", "user_tokens.destroy(id)", destroy)


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A configuration archive, as the clients build one."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def group_uploads(r: Runner, env: Env):
    """A configuration version created and uploaded through the gateway, as
    Terraform's CLI does for a remote run: the upload URL the upstream
    issued (its object storage, /_archivist/…, on the gateway's host) takes
    the archive; any other object storage URL does not, and an
    organization token may not create one."""
    import io
    import tempfile

    g = "uploads"
    fx = env.fx
    ws = fx["workspace_id"]
    archive = tar_gz({"main.tf": b'output "hello" { value = "world" }\n'})

    def status_of(cv_id):
        status, _, doc = env.raw.call("GET", f"/api/v2/configuration-versions/{cv_id}", token=fx["user_token"])
        if status != 200:
            raise Check(f"GET the configuration version -> {status}: {doc}")
        return jsonapi_data(doc, "configuration version")["attributes"].get("status")

    def pytfe_create():
        from pytfe.models import ConfigurationVersionCreateOptions

        cv = env.pytfe().configuration_versions.create(ws, ConfigurationVersionCreateOptions(auto_queue_runs=False))
        if not cv.upload_url or "/_archivist/" not in cv.upload_url:
            raise Check(f"upload-url {cv.upload_url!r}, expected the object storage on the gateway's host")
        guard_url(cv.upload_url)
        return f"{cv.id}, status {cv.status}", cv

    cv = r.step(g, "pytfe", "configuration_versions.create(auto_queue_runs=False)", pytfe_create)

    def pytfe_upload():
        cv_ = need(cv, "a configuration version")
        env.pytfe().configuration_versions.upload_tar_gzip(cv_.upload_url, io.BytesIO(archive))
        got = status_of(cv_.id)
        if got != "uploaded":
            raise Check(f"status {got!r} after the upload, expected 'uploaded'")
        return f"{len(archive)} bytes, status {got}"

    r.step(g, "pytfe", "configuration_versions.upload_tar_gzip(upload_url)", pytfe_upload)

    def download():
        cv_ = need(cv, "a configuration version")
        path = urlsplit(cv_.upload_url).path
        guard_url(env.base + path)
        try:
            with env.raw.opener.open(urllib.request.Request(env.base + path), timeout=HTTP_TIMEOUT) as resp:
                status, got = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, got = e.code, e.read()
        if status != 200 or got != archive:
            raise Check(f"GET the object without a token -> {status}, {len(got)} bytes; expected 200 and the {len(archive)} bytes uploaded")
        return f"GET {path.split('/object/')[0]}/object/… -> 200, the archive uploaded"

    r.step(g, "raw", "download from the object storage without a token", download)

    def terrasnek_create_upload():
        api = env.terrasnek()
        doc = api.config_versions.create(ws, {"data": {"type": "configuration-versions",
                                                       "attributes": {"auto-queue-runs": False}}})
        data = jsonapi_data(doc, "config_versions.create")
        url = data["attributes"].get("upload-url")
        if not url:
            raise Check(f"no upload-url in {data}")
        guard_url(url)
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as f:
            f.write(archive)
            f.flush()
            api.config_versions.upload(f.name, url)
        got = status_of(data["id"])
        if got != "uploaded":
            raise Check(f"status {got!r} after the upload, expected 'uploaded'")
        return env.tnote(f"{data['id']} uploaded (PUT with the token and a JSON:API content type)")

    r.step(g, "terrasnek", "config_versions.create() + upload()", terrasnek_create_upload)

    def forged_upload():
        path = "/_archivist/v1/object/bm90LWlzc3VlZC10aHJvdWdoLXRoZS1nYXRld2F5"
        req = urllib.request.Request(env.base + path, data=archive, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with env.raw.opener.open(req, timeout=HTTP_TIMEOUT) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        if status != 403:
            raise Check(f"PUT to an upload URL the upstream never issued -> {status}, expected 403")
        return "403, not forwarded"

    r.step(g, "raw", "upload to an object storage URL not issued through the gateway", forged_upload)

    def org_cannot_create():
        from pytfe.models import ConfigurationVersionCreateOptions

        try:
            env.pytfe(fx["org_token"]).configuration_versions.create(ws, ConfigurationVersionCreateOptions())
        except Exception as e:  # noqa: BLE001
            status = getattr(e, "status", None)
            if status not in (None, 403) and "403" not in str(e):
                raise Check(f"refused with {describe_exception(e)}, expected 403")
            return f"refused: {describe_exception(e)[:120]}"
        raise Check("an organization token created a configuration version (it could upload and queue a run)")

    r.step(g, "pytfe", "configuration_versions.create() [org token: refused]", org_cannot_create)


def group_ttl(r: Runner, env: Env):
    g = "ttl"
    org = env.fx["org"]
    from pytfe.models.org_token_ttl_policy import OrgTokenTTLPolicyUpdateOptions

    def lst():
        pols = list(env.pytfe().organization_token_ttl_policies.list(org))
        got = {p.token_type.value if p.token_type else None: p.max_ttl_ms for p in pols}
        return f"{got}", got

    before = r.step(g, "pytfe", "organization_token_ttl_policies.list(org)", lst)

    def update():
        pols = env.pytfe().organization_token_ttl_policies.update(org, OrgTokenTTLPolicyUpdateOptions(team="30d"))
        got = {p.token_type.value if p.token_type else None: p.max_ttl_ms for p in pols}
        if got.get("team") != 30 * 86_400_000:
            raise Check(f"team max-ttl-ms {got.get('team')!r}, expected 2592000000; got {got}")
        return f"{got}"

    ok = r.step(g, "pytfe", "organization_token_ttl_policies.update(team=30d)", update)

    if ok and isinstance(before, dict) and before.get("team"):
        def restore():
            env.pytfe().organization_token_ttl_policies.update(org, OrgTokenTTLPolicyUpdateOptions(team=int(before["team"])))
            return f"team max-ttl-ms back to {before['team']}"

        r.step(g, "pytfe", "organization_token_ttl_policies.update() [restore]", restore)


RUNNERS = {
    "discovery": group_discovery,
    "account": group_account,
    "uploads": group_uploads,
    "access": group_access,
    "legacy": group_legacy,
    "described": group_described,
    "user": group_user,
    "ttl": group_ttl,
}


def main(argv=None) -> int:
    global HTTP_TIMEOUT, VERBOSE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="gateway URL, loopback only (http://127.0.0.1:PORT)")
    p.add_argument("--fixture", required=True, help="JSON file with org, ids and tokens (see the module doc)")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated groups, run in the order given (default: {','.join(GROUPS)})")
    p.add_argument("--http-timeout", type=float, default=5.0, help="seconds per HTTP call (default 5)")
    p.add_argument("--budget", type=float, default=50.0, help="seconds for the whole run (default 50)")
    p.add_argument("--no-stub-discovery", action="store_true",
                   help="when terrasnek's real discovery fails, fail its later steps instead of retrying them "
                        "with a stubbed /.well-known document")
    p.add_argument("--verbose", action="store_true", help="tracebacks on stderr")
    args = p.parse_args(argv)
    HTTP_TIMEOUT = args.http_timeout
    VERBOSE = args.verbose

    host = urlsplit(args.base_url).hostname
    if urlsplit(args.base_url).scheme not in ("http", "https") or not is_loopback_host(host):
        print(f"error: --base-url must be http(s) on a loopback address, got {args.base_url}", file=sys.stderr)
        return 2
    groups = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in groups if x not in RUNNERS]
    if unknown or not groups:
        print(f"error: unknown group(s) {unknown}; choose from {','.join(GROUPS)}", file=sys.stderr)
        return 2
    try:
        with open(args.fixture) as f:
            fx = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: cannot read fixture {args.fixture}: {e}", file=sys.stderr)
        return 2
    missing = sorted({k for gname in groups for k in FIXTURE_KEYS[gname] if not fx.get(k)})
    if missing:
        print(f"error: fixture lacks {missing} for groups {groups}", file=sys.stderr)
        return 2

    def hard_stop(signum, frame):
        print(json.dumps({"group": "-", "client": "-", "step": "time budget", "ok": False,
                          "detail": f"run stopped after {args.budget + 5:.0f} s"}), flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, hard_stop)
    signal.alarm(int(args.budget + 5))

    runner = Runner(time.monotonic() + args.budget)
    env = Env(args.base_url, fx, stub_discovery=not args.no_stub_discovery)
    for gname in groups:
        try:
            RUNNERS[gname](runner, env)
        except Exception as e:  # a bug in a group must not hide the others
            runner.emit(gname, "-", "group crashed", False, describe_exception(e))
    signal.alarm(0)
    print(f"{runner.passed} passed, {runner.failed} failed", file=sys.stderr)
    return 0 if runner.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
