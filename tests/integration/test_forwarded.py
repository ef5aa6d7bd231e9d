"""trusted_proxies: X-Forwarded-For counts only from a trusted peer, read
right to left skipping trusted hops; what it yields is the client address
of the access log and of rate limits keyed by client. Without the key
(the default) a client's X-Forwarded-For is ignored, whatever it claims.
Proxy routes append our peer to a trusted chain (X-Forwarded-For and RFC
7239 Forwarded) and send X-Forwarded-Proto; an untrusted chain is
dropped."""

import http.client
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, up_config  # noqa: E402

LIMIT = {"rate_limit.perclient": {"quota": 1, "window_s": 3600,
                                  "burst": 1, "key": "client"}}


def rec_headers(rec):
    out = {}
    for k, v in rec["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


class _Case(TwoSimsCase):
    SERVER = {}

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url, server=dict(cls.SERVER),
                         one={"retries": 0, "breaker_min_calls": 1000},
                         plugin_two={"ok_rate_limit": "perclient"},
                         extra=LIMIT)

    def upstream(self, path):
        reqs = self.sim1.requests(path)
        self.assertEqual(len(reqs), 1, reqs)
        return rec_headers(reqs[0])

    def logged(self, rid):
        logs = self.d.request_log(rid)
        self.assertEqual(len(logs), 1, logs)
        return logs[0]


class TrustedProxyTest(_Case):
    SERVER = {"trusted_proxies": "10.0.0.0/8, 127.0.0.1, ::1"}

    def test_client_address_from_trusted_peer(self):
        r = self.d.get("/t/up_one/ok", headers={
            "X-Forwarded-For": "203.0.113.7", "X-Request-ID": "fw-t-1"})
        self.assertEqual(r.status, 200, r)
        ev = self.logged("fw-t-1")
        self.assertEqual(ev["clientAddr"], "203.0.113.7")
        self.assertEqual(ev["peerAddr"], "127.0.0.1")

    def test_spoofed_left_hops_are_ignored(self):
        # the client wrote 6.6.6.6 itself; our trusted hops (10.x) added
        # what they saw: 198.51.100.9 is the first untrusted from the right
        r = self.d.get("/t/up_one/ok", headers={
            "X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.1.1.1",
            "X-Request-ID": "fw-t-2"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.logged("fw-t-2")["clientAddr"], "198.51.100.9")

    def test_ipv6_hop_and_garbage(self):
        r = self.d.get("/t/up_one/ok", headers={
            "X-Forwarded-For": "6.6.6.6, [2001:DB8::5], 10.0.0.2",
            "X-Request-ID": "fw-t-3"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.logged("fw-t-3")["clientAddr"], "2001:db8::5")
        # a hop that is no address ends the walk at the trusted hop
        r = self.d.get("/t/up_one/ok", headers={
            "X-Forwarded-For": "203.0.113.1, unknown, 10.0.0.3",
            "X-Request-ID": "fw-t-4"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.logged("fw-t-4")["clientAddr"], "10.0.0.3")

    def test_rate_limit_keyed_by_yielded_address(self):
        a = {"X-Forwarded-For": "198.51.100.1"}
        b = {"X-Forwarded-For": "198.51.100.2"}
        self.assertEqual(self.d.get("/t/up_two/ok", headers=a).status, 200)
        r = self.d.get("/t/up_two/ok", headers=a)
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.code, "rate_limit.exceeded")
        # another client behind the same proxy has a bucket of its own
        self.assertEqual(self.d.get("/t/up_two/ok", headers=b).status, 200)

    def test_proxy_route_appends_to_trusted_chain(self):
        path = "/t/up_one/proxy/fw/chain"
        r = self.d.get(path, headers={
            "X-Forwarded-For": "203.0.113.7",
            "Forwarded": "for=203.0.113.7;proto=https",
            "X-Forwarded-Proto": "https"})
        self.assertEqual(r.status, 200, r)
        h = self.upstream(path)
        self.assertEqual(h.get("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"])
        self.assertEqual(h.get("x-real-ip"), ["203.0.113.7"])
        self.assertEqual(h.get("x-forwarded-proto"), ["https"])
        fwd = h.get("forwarded")
        self.assertEqual(len(fwd), 1, fwd)
        self.assertTrue(fwd[0].startswith(
            "for=203.0.113.7;proto=https, for=127.0.0.1;host="), fwd)
        self.assertTrue(fwd[0].endswith(";proto=http"), fwd)


class UntrustedTest(_Case):
    """The default: nobody's X-Forwarded-For counts."""

    def test_spoofed_xff_is_ignored(self):
        r = self.d.get("/t/up_one/ok", headers={
            "X-Forwarded-For": "203.0.113.7", "X-Request-ID": "fw-u-1"})
        self.assertEqual(r.status, 200, r)
        ev = self.logged("fw-u-1")
        self.assertEqual(ev["clientAddr"], "127.0.0.1")
        self.assertNotIn("peerAddr", ev)

    def test_rate_limit_not_fooled_by_xff(self):
        self.assertEqual(self.d.get("/t/up_two/ok", headers={
            "X-Forwarded-For": "198.51.100.1"}).status, 200)
        r = self.d.get("/t/up_two/ok",
                       headers={"X-Forwarded-For": "198.51.100.2"})
        self.assertEqual(r.status, 429, r)

    def test_proxy_route_sends_only_our_hop(self):
        path = "/t/up_one/proxy/fw/own"
        r = self.d.get(path, headers={
            "X-Forwarded-For": "203.0.113.7",
            "Forwarded": "for=203.0.113.7;proto=https",
            "X-Forwarded-Proto": "https"})
        self.assertEqual(r.status, 200, r)
        h = self.upstream(path)
        self.assertEqual(h.get("x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(h.get("x-forwarded-proto"), ["http"])
        self.assertEqual(h.get("forwarded"),
                         ["for=127.0.0.1;host=\"127.0.0.1:%d\";proto=http"
                          % self.d.api_port])


class Ipv6PeerTest(_Case):
    """A peer on ::1: Forwarded quotes it (RFC 7239 section 6), and a
    trusted IPv6 peer's X-Forwarded-For counts."""
    SERVER = {"listen": "[::1]:0", "trusted_proxies": "::1"}

    def get6(self, path, headers):
        c = http.client.HTTPConnection("::1", self.d.api_port, timeout=5)
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def test_forwarded_quotes_ipv6(self):
        path = "/t/up_one/proxy/fw/v6"
        self.assertEqual(self.get6(path, {"X-Forwarded-For": "203.0.113.8",
                                          "X-Request-ID": "fw-6-1"}), 200)
        h = self.upstream(path)
        self.assertEqual(h.get("x-forwarded-for"), ["203.0.113.8, ::1"])
        self.assertEqual(h.get("x-real-ip"), ["203.0.113.8"])
        fwd = h.get("forwarded")[0]
        self.assertTrue(fwd.startswith('for="[::1]";host='), fwd)
        ev = self.logged("fw-6-1")
        self.assertEqual(ev["clientAddr"], "203.0.113.8")
        self.assertEqual(ev["peerAddr"], "::1")


if __name__ == "__main__":
    harness.main()
