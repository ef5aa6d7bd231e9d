"""Fixtures for the billing and ai plugin tests (test_billing_*.py,
test_ai_*.py). Standard library only.

- config(): a daemon with [auth] (minted tokens are accepted), the billing
  and ai plugins, each provider in its own simulator, and optionally the
  auth plugin (embedded identity provider);
- bearer(): Authorization headers for a user id (auth_tokens.py);
- sign_event() / checkout_event() / seed_customer(): the payment
  provider's signed event callbacks (Stripe-Signature: t=...,v1=HMAC);
- sse_events() and StreamReader: the server-sent events a streamed
  draft-reply sends, read as they arrive.
"""

import hashlib
import hmac
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_tokens import TEST_SECRET, auth_section, mint_access_token  # noqa
from harness import SANITIZE, plugin  # noqa: E402
from upstream_env import closed_port, start_sim, wait_for  # noqa: F401,E402

SECRET_KEY = "sk_test_bulkhead_0123456789"
WEBHOOK_SECRET = "whsec_test_bulkhead_abcdef"
AI_KEY = "sk-ant-test-bulkhead-9876543210"
MODEL = "claude-test-model"
MAX_TOKENS = 321

# Upstream settings that keep a test's counts exact: one attempt, and a
# breaker that never trips on its own (tests force it through the admin
# API when they want it open).
QUIET_UPSTREAM = {"retries": 0, "breaker_min_calls": 1000,
                  "timeout_ms": 1500, "connect_timeout_ms": 500}


def config(billing_url=None, ai_url=None, billing=None, ai=None,
           upstream_billing=None, upstream_ai=None, auth_plugin=False,
           server=None, extra=None):
    """Config dict for a daemon serving billing and ai (and auth when
    auth_plugin). billing/ai are extra [plugin.*] keys, upstream_* extra
    [upstream.*] keys (over QUIET_UPSTREAM)."""
    cfg = {}
    if server:
        cfg["server"] = dict(server)
    cfg["auth"] = auth_section(TEST_SECRET)
    if auth_plugin:
        cfg["plugin.auth"] = {"path": plugin("auth"),
                              "mount": "/v1/auth, /v1/api-keys",
                              "idp": "local"}
    pb = {"path": plugin("billing"), "mount": "/v1/billing",
          "secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
          "success_url": "https://app.example.invalid/billing/done",
          "cancel_url": "https://app.example.invalid/pricing",
          "portal_return_url": "https://app.example.invalid/account"}
    pb.update(billing or {})
    cfg["plugin.billing"] = dict((k, v) for k, v in pb.items()
                                 if v is not None)
    pa = {"path": plugin("ai"), "mount": "/v1/ai", "api_key": AI_KEY,
          "model": MODEL, "max_tokens": MAX_TOKENS}
    pa.update(ai or {})
    cfg["plugin.ai"] = dict((k, v) for k, v in pa.items() if v is not None)
    ub = dict(QUIET_UPSTREAM, url=billing_url or harness.DEAD_UPSTREAM)
    ub.update(upstream_billing or {})
    cfg["upstream.billing"] = ub
    ua = dict(QUIET_UPSTREAM, url=ai_url or harness.DEAD_UPSTREAM)
    ua.update(upstream_ai or {})
    cfg["upstream.ai"] = ua
    for k, v in (extra or {}).items():
        cfg[k] = v
    return cfg


def bearer(user, **extra):
    # iat a few seconds back: the daemon reads the clock with time(), which
    # may lag the clock Python reads by a few ms at a second boundary, and
    # a token issued "in the future" is refused with no leeway
    tok = mint_access_token(TEST_SECRET, user, iat=int(time.time()) - 5)
    h = {"Authorization": "Bearer " + tok}
    h.update(extra)
    return h


# --------------------------------------------------------------------------
# Provider events
# --------------------------------------------------------------------------

def sign_event(body, secret=WEBHOOK_SECRET, t=None):
    """The Stripe-Signature header value for body (bytes or str)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    t = int(time.time()) if t is None else int(t)
    mac = hmac.new(secret.encode("utf-8"), b"%d." % t + body,
                   hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


_seq = [0]


def event_id():
    _seq[0] += 1
    return "evt_test_%d_%d" % (os.getpid(), _seq[0])


def checkout_event(user, customer, eid=None, subscription="sub_test_1"):
    """A checkout.session.completed event body (str)."""
    return json.dumps({
        "id": eid or event_id(), "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {
            "id": "cs_test_1", "object": "checkout.session",
            "client_reference_id": user, "customer": customer,
            "subscription": subscription, "mode": "subscription",
            "status": "complete"}}})


def post_event(d, body, signature=None, headers=None):
    h = {"Content-Type": "application/json; charset=utf-8",
         "Stripe-Signature": sign_event(body) if signature is None
         else signature}
    if signature is False:
        del h["Stripe-Signature"]
    h.update(headers or {})
    return d.post("/v1/billing/provider-events", body=body, headers=h)


def seed_customer(d, user, customer):
    """Records user -> customer the way the provider does: a signed
    completed-checkout event."""
    r = post_event(d, checkout_event(user, customer))
    if r.status != 200:
        raise AssertionError("seeding %s failed: %r" % (user, r))


# --------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------

def sse_events(body):
    """[(event, data)] of a text/event-stream body (bytes)."""
    out = []
    for block in body.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        ev, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        out.append((ev, "\n".join(data)))
    return out


class StreamReader(object):
    """One streamed request on a raw socket: the head, then the chunked
    body's pieces with the time each arrived (seconds since the request
    was sent)."""

    def __init__(self, d, path, body, headers, timeout=10.0):
        data = json.dumps(body).encode()
        lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1",
                 "Content-Type: application/json",
                 "Content-Length: %d" % len(data)]
        lines += ["%s: %s" % kv for kv in headers.items()]
        self.sock = socket.create_connection(("127.0.0.1", d.port()),
                                             timeout=timeout)
        self.t0 = time.monotonic()
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        self.buf = b""
        self.status = None
        self.headers = {}
        self.pieces = []  # (seconds, bytes) of the decoded body
        self.complete = False  # the terminating chunk arrived
        self.eof = False

    def _fill(self):
        try:
            b = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("stream stalled: %r" % (self.pieces,))
        except ConnectionError:
            b = b""
        if not b:
            self.eof = True
        self.buf += b
        return bool(b)

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError("no head: %r" % self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        return self

    def read_piece(self):
        """The next chunk's data, or None at the end / on EOF."""
        while True:
            nl = self.buf.find(b"\r\n")
            if nl >= 0:
                size = int(self.buf[:nl].split(b";")[0], 16)
                if len(self.buf) >= nl + 2 + size + 2:
                    data = self.buf[nl + 2:nl + 2 + size]
                    self.buf = self.buf[nl + 2 + size + 2:]
                    if size == 0:
                        self.complete = True
                        return None
                    self.pieces.append((time.monotonic() - self.t0, data))
                    return data
            if self.eof or not self._fill():
                return None

    def read_all(self):
        while self.read_piece() is not None:
            pass
        return self

    def body(self):
        return b"".join(p for _, p in self.pieces)

    def events(self):
        return sse_events(self.body())

    def first_time(self, event):
        """When the first piece holding `event` arrived."""
        for t, p in self.pieces:
            if ("event: %s\n" % event).encode() in p:
                return t
        return None

    def close(self):
        self.sock.close()


def problem_of(data):
    """The Problem JSON of an "event: error" data line."""
    return json.loads(data)


# Timing margins: the ASan build is slower at everything.
SLOW = 2.0 if SANITIZE else 1.0
