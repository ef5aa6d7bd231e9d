"""Fixtures for the sessions-and-identity tests (test_auth_*.py). Standard
library only.

- ACCOUNTS: the simulator's identity-provider accounts (tests/sim/sim_idp.c)
- auth_config(): a daemon with the auth plugin in front of the simulator
  (identity_toolkit) or its embedded provider (local), the whoami test
  plugin (auth-required routes of another plugin) and an [auth] section
- Jar: the cookies a browser would keep, from Set-Cookie answers
- login(): POST /v1/auth/login
"""

import os
import time

import harness
from auth_tokens import TEST_SECRET, auth_section
from harness import plugin, test_plugin
from upstream_env import start_sim  # noqa: F401  (re-exported)

ACCOUNTS = {
    "alice": ("alice@example.com", "alice-password-1", "sim_user_alice"),
    "bob": ("bob@example.com", "bob-password-2", "sim_user_bob"),
    "carol": ("carol@example.com", "carol-password-3", "sim_user_carol"),
    "disabled": ("disabled@example.com", "disabled-password",
                 "sim_user_disabled"),
}

SIGNIN = "/v1/accounts:signInWithPassword"
LOOKUP = "/v1/accounts:lookup"

FIXTURES = os.path.join(harness.SOURCE_DIR, "tests", "fixtures", "auth")


def auth_config(sim_url=None, idp="identity_toolkit", secret=TEST_SECRET,
                auth=None, plugin_auth=None, upstream=None, server=None,
                extra=None):
    """Config dict: [auth] (auth_tokens.auth_section + `auth` overrides),
    [plugin.auth] with `idp`, [upstream.auth] at sim_url (one attempt, short
    timeout, a breaker that does not trip during a test), [plugin.whoami]
    and its upstream."""
    cfg = {}
    if server:
        cfg["server"] = dict(server)
    sec = auth_section(secret, refresh_grace_s=0)
    sec.update(auth or {})
    if sec.get("jwt_secret") is None:
        del sec["jwt_secret"]
    cfg["auth"] = sec
    pa = {"path": plugin("auth"), "mount": "/v1/auth, /v1/api-keys",
          "idp": idp}
    if idp == "identity_toolkit":
        pa["idp_api_key"] = "sim-api-key"
    pa.update(plugin_auth or {})
    cfg["plugin.auth"] = pa
    if idp == "identity_toolkit":
        up = {"url": sim_url or harness.DEAD_UPSTREAM, "timeout_ms": 1500,
              "connect_timeout_ms": 500, "retries": 0,
              "breaker_min_calls": 100}
        up.update(upstream or {})
        cfg["upstream.auth"] = up
    cfg["plugin.whoami"] = {"path": test_plugin("whoami"),
                            "mount": "/t/whoami"}
    cfg["upstream.whoami"] = {"url": sim_url or harness.DEAD_UPSTREAM,
                              "retries": 0}
    for k, v in (extra or {}).items():
        cfg[k] = v
    return cfg


def parse_set_cookies(resp):
    """{name: (value, {attribute-lower: value-or-True})} of a response."""
    out = {}
    for k, v in resp.header_list:
        if k.lower() != "set-cookie":
            continue
        parts = [p.strip() for p in v.split(";")]
        name, _, value = parts[0].partition("=")
        attrs = {}
        for p in parts[1:]:
            a, eq, av = p.partition("=")
            attrs[a.lower()] = av if eq else True
        out[name] = (value, attrs)
    return out


class Jar(object):
    """The cookies a browser keeps: updated from every answer's Set-Cookie
    (Max-Age=0 deletes), sent back as one Cookie header."""

    def __init__(self, cookies=None):
        self.cookies = dict(cookies or {})

    def update(self, resp):
        for name, (value, attrs) in parse_set_cookies(resp).items():
            if attrs.get("max-age") == "0" or value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return resp

    def header(self):
        return "; ".join("%s=%s" % kv for kv in self.cookies.items())

    def headers(self, **extra):
        h = {"Cookie": self.header()} if self.cookies else {}
        h.update(extra)
        return h

    def copy(self):
        return Jar(self.cookies)

    def get(self, name):
        return self.cookies.get(name)


def login(d, who="alice", password=None, include_refresh=False, headers=None):
    email, pw, _ = ACCOUNTS[who] if who in ACCOUNTS else (who, None, None)
    body = {"email": email, "password": password if password else pw}
    if include_refresh:
        body["includeRefreshToken"] = True
    return d.post("/v1/auth/login", body=body, headers=headers or {})


def browser_login(d, who="alice"):
    """Logs in like a portal's login form would; returns the Jar."""
    jar = Jar()
    r = jar.update(login(d, who))
    if r.status != 200:
        raise AssertionError("login failed: %r" % r)
    return jar


def bearer(token):
    return {"Authorization": "Bearer " + token}


def wait_until(t):
    """Sleeps until the wall clock passes t (unix seconds)."""
    left = t - time.time()
    if left > 0:
        time.sleep(left)
