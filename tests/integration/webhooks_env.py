"""Shared fixtures for the webhooks plugin tests (test_webhooks_*.py).
Standard library only.

- config builders: the webhooks plugin with a compressed retry schedule,
  loopback receivers allowed, behind the core's real auth middleware
  ([auth] from auth_tokens.py, a minted Bearer token on every call);
- Api: the plugin's HTTP API as small methods;
- verify(): an independent implementation of the Standard Webhooks
  signature check (HMAC-SHA256 over "id.timestamp.body", base64, "v1,"),
  written from the specification, not from the plugin's code;
- receiver helpers over the simulator's recorded requests.
"""

import base64
import hashlib
import hmac
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_tokens import TEST_SECRET, auth_sections, mint_access_token  # noqa
from upstream_env import start_sim, wait_for  # noqa: E402,F401

SLACK = harness.SLACK

# Compressed for tests: 4 attempts, 0 / 300 / 600 / 900 ms apart.
SCHEDULE = "0, 300ms, 600ms, 900ms"
SCHEDULE_MS = [0, 300, 600, 900]


def webhooks_section(**keys):
    # receivers listen on free (random) ports: any port is allowed here
    sec = {"path": harness.plugin("webhooks"), "mount": "/v1/webhooks",
           "allow_loopback": True, "allowed_ports": "any",
           "retry_schedule": SCHEDULE,
           "retry_jitter_percent": 0, "delivery_timeout_ms": 2000,
           "connect_timeout_ms": 1000, "lease_ms": 3500, "poll_ms": 200,
           "breaker_failures": 50, "breaker_open_ms": 1000}
    sec.update(keys)
    return sec


def config(server=None, others=(), **keys):
    """A daemon config dict: [auth], [plugin.webhooks] (keys override the
    test defaults), and first-party plugins `others` with dead upstreams."""
    cfg = {}
    if server:
        cfg["server"] = dict(server)
    cfg["plugin.webhooks"] = webhooks_section(**keys)
    cfg.update(harness.first_party(*others))
    if "auth" in others:  # its routes span two mounts
        cfg["plugin.auth"]["mount"] = "/v1/auth, /v1/api-keys"
    return auth_sections(TEST_SECRET, cfg)


def auth_headers(sub="user_wh"):
    # iat a minute back: time(2) in the daemon reads a coarse clock that can
    # lag this process's clock across a second boundary, and the test
    # config allows no leeway
    tok = mint_access_token(TEST_SECRET, sub, iat=int(time.time()) - 60)
    return {"Authorization": "Bearer " + tok}


class Api(object):
    """The webhooks API of daemon `d`, authenticated."""

    def __init__(self, d):
        self.d = d

    def call(self, method, path, body=None, headers=None, auth=True,
             timeout=10.0):
        h = auth_headers() if auth else {}
        h.update(headers or {})
        return self.d.request(method, "/v1/webhooks" + path, body=body,
                              headers=h, timeout=timeout)

    def create(self, url, events=("*",), **extra):
        body = {"url": url, "events": list(events)}
        body.update(extra)
        r = self.call("POST", "/endpoints", body)
        if r.status != 201:
            raise AssertionError("create endpoint: %r" % r)
        return r.json()

    def event(self, type_, data=None, key=None):
        body = {"type": type_, "data": data if data is not None else {}}
        if key is not None:
            body["idempotencyKey"] = key
        return self.call("POST", "/events", body)

    def event_id(self, type_, data=None, key=None):
        r = self.event(type_, data, key)
        if r.status != 202:
            raise AssertionError("post event: %r" % r)
        return r.json()["id"]

    def deliveries(self, query=""):
        r = self.call("GET", "/deliveries" + query)
        if r.status != 200:
            raise AssertionError("list deliveries: %r" % r)
        return r.json()

    def delivery(self, did):
        r = self.call("GET", "/deliveries/" + did)
        if r.status != 200:
            raise AssertionError("get delivery: %r" % r)
        return r.json()

    def endpoint(self, eid):
        r = self.call("GET", "/endpoints/" + eid)
        if r.status != 200:
            raise AssertionError("get endpoint: %r" % r)
        return r.json()

    def all_deliveries(self, query=""):
        """Every page of a delivery listing, newest first."""
        out, cursor = [], None
        sep = "&" if query else "?"
        while True:
            q = query + (sep + "cursor=" + cursor if cursor else "")
            page = self.deliveries(q if q else "")
            out.extend(page["data"])
            cursor = page["nextCursor"]
            if not cursor:
                return out

    def wait_status(self, did, status, timeout=5.0):
        """The delivery once its status is `status` (None on timeout)."""
        got = wait_for(lambda: self.delivery(did)["status"] == status,
                       timeout=timeout, step=0.05)
        return self.delivery(did) if got else None


# --------------------------------------------------------------------------
# Standard Webhooks, independently
# --------------------------------------------------------------------------

def sign(secret, msg_id, timestamp, body):
    """v1 signature of body (bytes) per the Standard Webhooks spec."""
    assert secret.startswith("whsec_"), secret
    key = base64.b64decode(secret[len("whsec_"):])
    to_sign = ("%s.%s." % (msg_id, timestamp)).encode("utf-8") + body
    mac = hmac.new(key, to_sign, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def headers_of(rec):
    """Recorded request headers as a dict, names lower-cased."""
    return dict((k.lower(), v) for k, v in rec["headers"])


def verify(secret, rec, tolerance_s=300):
    """True when one of the v1 signatures of the recorded request is the
    one `secret` makes, and its timestamp is fresh."""
    h = headers_of(rec)
    msg_id, ts, sigs = (h.get("webhook-id"), h.get("webhook-timestamp"),
                        h.get("webhook-signature"))
    if not (msg_id and ts and sigs):
        return False
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    want = sign(secret, msg_id, ts, rec["body"].encode("utf-8"))
    for part in sigs.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, want):
            return True
    return False


def received(sim, path):
    """Requests the receiver at `path` got, oldest first."""
    return sim.requests(path)


def ids_at(sim, path, ok_only=False):
    """webhook-id of every request received at `path` (answered 2xx only
    with ok_only)."""
    out = []
    for rec in sim.requests(path):
        if ok_only and not (rec.get("status") and 200 <= rec["status"] < 300):
            continue
        out.append(headers_of(rec).get("webhook-id"))
    return out
