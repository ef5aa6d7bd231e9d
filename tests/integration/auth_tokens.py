"""Access tokens for tests, minted independently of the daemon (standard
library only: hmac + base64 + json).

    from auth_tokens import TEST_SECRET, auth_config, mint_access_token

    cfg = {"plugin.webhooks": {...}}
    d = Daemon(auth_sections(TEST_SECRET, cfg))     # or write auth_config()
    tok = mint_access_token(TEST_SECRET, "user_1")
    r = d.get("/v1/webhooks/endpoints",
              headers={"Authorization": "Bearer " + tok})

What the daemon accepts (core/jwt.c), and what mint_access_token() writes:
  header   {"alg": "HS256", "typ": "JWT"}; any other alg is refused, "none"
           included, whatever the signature says
  claims   iss == [auth] issuer ("bulkhead"), aud == [auth] audience
           ("bulkhead"; a string, or a list containing it), sub (the user
           id, 1..127 bytes), typ == "access", exp (required, an integer),
           iat and nbf (optional integers); sid (the session id) and scope
           (space-separated) are optional strings
  time     exp, nbf and iat are checked with [auth] leeway_s (default 30 s;
           auth_config() sets 0 so a test's expiry is exact)

Verification needs no session row and touches no disk: a minted token is
valid as it is, for its lifetime, and a test needs nothing else than the
[auth] section below (the same secret on both sides). The principal a
plugin sees for it: kind BH_AUTH_BEARER, user_id = sub, session_id = sid
or "", scopes = scope or "".
"""

import base64
import hashlib
import hmac
import json
import time

__all__ = ["TEST_SECRET", "mint_access_token", "mint_token", "auth_config",
           "auth_section", "auth_sections", "b64url"]

# 40 bytes: [auth] jwt_secret must be at least 32.
TEST_SECRET = "test-secret-0123456789-abcdefghij-KLMNOP"


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(secret, header, claims, signature=None):
    """A JWT from explicit header and claims dicts, HS256-signed with
    `secret` (str or bytes) unless `signature` (bytes, or "" for none)
    is given. For forged-token tests."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    signing_input = (b64url(json.dumps(header, separators=(",", ":"))) + "." +
                     b64url(json.dumps(claims, separators=(",", ":"))))
    if signature is None:
        signature = hmac.new(secret, signing_input.encode("ascii"),
                             hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def mint_access_token(secret, sub, ttl_s=300, iss="bulkhead", aud="bulkhead",
                      **extra):
    """An HS256 access token the daemon accepts as
    `Authorization: Bearer <token>` when its [auth] jwt_secret is `secret`.
    extra claims are added as given (sid="...", scope="a b", or exp=... /
    typ=... to override the defaults; a value of None drops the claim)."""
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": sub, "typ": "access",
              "iat": now, "exp": now + int(ttl_s)}
    claims.update(extra)
    claims = dict((k, v) for k, v in claims.items() if v is not None)
    return mint_token(secret, {"alg": "HS256", "typ": "JWT"}, claims)


def auth_section(secret, issuer="bulkhead", audience="bulkhead",
                 access_ttl_s=300, refresh_ttl_s=3600, **extra):
    """The [auth] keys for a test config dict. The secret is given inline
    (a test secret; production uses @env:NAME or @file:PATH). Cookies are
    sent without Secure (the tests speak plain http) and the clock leeway
    is 0."""
    sec = {"jwt_secret": secret, "issuer": issuer, "audience": audience,
           "access_ttl_s": access_ttl_s, "refresh_ttl_s": refresh_ttl_s,
           "leeway_s": 0, "cookie_secure": False}
    sec.update(extra)
    return sec


def auth_sections(secret, config=None, **kw):
    """config (a harness.Daemon config dict) with an [auth] section added."""
    out = dict(config or {})
    out["auth"] = auth_section(secret, **kw)
    return out


def auth_config(secret, **kw):
    """The [auth] section as INI text, for configs written as text."""
    lines = ["[auth]"]
    for k, v in auth_section(secret, **kw).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"
