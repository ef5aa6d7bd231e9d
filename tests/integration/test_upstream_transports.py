"""The same call suites over both transports. http:// upstreams run on the
core's own client everywhere else; here the retry, proxy and malformed-head
suites run again with `transport = curl` on every upstream, the libcurl
path that https:// upstreams take (no TLS origin is needed to drive it):
both transports must give the same outcomes to the same calls."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_proxy  # noqa: E402
import test_retry  # noqa: E402
import test_upstream_malformed  # noqa: E402


def over_curl(cfg):
    for name, sec in cfg.items():
        if name.startswith("upstream."):
            sec["transport"] = "curl"
    return cfg


class RetryOverCurlTest(test_retry.RetryTest):
    @classmethod
    def make_config(cls, one_url, two_url):
        return over_curl(super().make_config(one_url, two_url))


class RetryBudgetOverCurlTest(test_retry.RetryBudgetTest):
    @classmethod
    def make_config(cls, one_url, two_url):
        return over_curl(super().make_config(one_url, two_url))


class ProxyOverCurlTest(test_proxy.ProxyTest):
    @classmethod
    def make_config(cls, one_url, two_url):
        return over_curl(super().make_config(one_url, two_url))


class MalformedOverCurlTest(test_upstream_malformed.UpstreamMalformedTest):
    @classmethod
    def make_config(cls, one_url, two_url):
        return over_curl(super().make_config(one_url, two_url))


if __name__ == "__main__":
    harness.main()
