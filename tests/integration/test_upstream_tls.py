"""The call suites of test_upstream_transports over real TLS: each
simulator sits behind an https front (tls_front.py) with a certificate
signed by a CA made for the test, named by [upstream.NAME] ca_file, so the
retry, proxy and malformed-head suites (timeouts included) run on libcurl's
https path with verification on. A certificate no configured CA vouches
for is refused: the call fails as a TLS transport error (the error map's
answer for a transport failure, "TLS failure" in /admin/status, the
simulator never sees the request), never a silent accept."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_proxy  # noqa: E402
import test_retry  # noqa: E402
import test_upstream_malformed  # noqa: E402
from tls_front import TlsFront, make_certs  # noqa: E402
from upstream_env import TwoSimsCase, up_config, upstream_status  # noqa


_CERTS = []


def certs():
    """One set of certificates for the whole module (RSA keys are slow)."""
    if not _CERTS:
        d = tempfile.mkdtemp(prefix="bh-tls-")
        _CERTS.append((d, make_certs(d)))
    return _CERTS[0][1]


def tearDownModule():
    for d, _ in _CERTS:
        shutil.rmtree(d, ignore_errors=True)


class OverTls(object):
    """Mixin: the simulators behind TLS fronts, every upstream verifying
    them against the test CA. `FRONT_CERT` picks the fronts' cert."""

    FRONT_CERT = "server"

    @classmethod
    def make_config(cls, one_url, two_url):
        c = certs()
        cert, key = ((c.server_cert, c.server_key) if cls.FRONT_CERT ==
                     "server" else (c.other_cert, c.other_key))
        cls.front1 = TlsFront(cls.sim1, cert, key)
        cls.front2 = TlsFront(cls.sim2, cert, key)
        cfg = super().make_config(cls.front1.url, cls.front2.url)
        for name, sec in cfg.items():
            if name.startswith("upstream."):
                sec["ca_file"] = c.ca_cert
        return cfg

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for f in ("front1", "front2"):
                if hasattr(cls, f):
                    getattr(cls, f).stop()


class RetryOverTlsTest(OverTls, test_retry.RetryTest):
    pass


class RetryBudgetOverTlsTest(OverTls, test_retry.RetryBudgetTest):
    pass


class ProxyOverTlsTest(OverTls, test_proxy.ProxyTest):
    pass


class MalformedOverTlsTest(OverTls,
                           test_upstream_malformed.UpstreamMalformedTest):
    pass


class NoRetries(TwoSimsCase):
    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url,
                         one={"retries": 0, "breaker_min_calls": 1000},
                         two={"retries": 0, "breaker_min_calls": 1000})


class BadCertTest(OverTls, NoRetries):
    """Fronts with a self-signed certificate for the right names that the
    configured CA did not sign."""

    FRONT_CERT = "other"

    def test_unknown_issuer_is_refused(self):
        r = self.d.get("/t/up_one/proxy/v1/items")
        # the test plugin maps transport failures to <plugin>.unavailable
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["extensions"]["code"], "up_one.unavailable",
                         r)
        self.assertEqual(upstream_status(self.d, "up_one")["lastError"],
                         "TLS failure")
        self.assertEqual(self.sim1.count("/t/up_one/proxy/v1/items"), 0)
        self.assertGreaterEqual(self.front1.handshake_failures, 1)

    def test_plugin_call_refused_too(self):
        r = self.d.get("/t/up_one/get/x")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(upstream_status(self.d, "up_one")["lastError"],
                         "TLS failure")


class CaFileConfigTest(unittest.TestCase):
    """An unreadable ca_file is refused when the config is loaded."""

    def test_missing_ca_file_refused(self):
        cfg = up_config("https://127.0.0.1:1", "https://127.0.0.1:1",
                        one={"ca_file": "/nonexistent/ca.pem"})
        d = tempfile.mkdtemp(prefix="bh-tls-cfg-")
        try:
            path = os.path.join(d, "bulkhead.ini")
            with open(path, "w") as f:
                f.write(harness.render_config(cfg))
            r = harness.run_tool(["-t", "-c", path])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("ca_file", r.stderr)
        self.assertIn("cannot read '/nonexistent/ca.pem'", r.stderr)


if __name__ == "__main__":
    harness.main()
