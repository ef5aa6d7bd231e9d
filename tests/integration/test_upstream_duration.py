"""Upstream call durations in /metrics at microsecond resolution: a fast
call on loopback takes well under a millisecond, and the loop's clock
(cached, in ms) read it as 0; bulkhead_upstream_call_duration_seconds now
sums what the calls really took."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from upstream_env import TwoSimsCase, metric, scrape, up_config  # noqa: E402

SUM = "bulkhead_upstream_call_duration_seconds_sum"
COUNT = "bulkhead_upstream_call_duration_seconds_count"


class UpstreamDurationTest(TwoSimsCase):

    @classmethod
    def make_config(cls, one_url, two_url):
        return up_config(one_url, two_url,
                         one={"retries": 0, "breaker_min_calls": 1000})

    def test_fast_calls_are_not_recorded_as_zero(self):
        m0 = scrape(self.d)
        for _ in range(5):
            self.assertEqual(self.d.get("/t/up_one/get/d/ok").status, 200)
        m1 = scrape(self.d)
        n = metric(m1, COUNT, upstream="up_one") - metric(m0, COUNT,
                                                          upstream="up_one")
        took = metric(m1, SUM, upstream="up_one") - metric(m0, SUM,
                                                           upstream="up_one")
        self.assertEqual(n, 5)
        self.assertGreater(took, 0.0, "5 calls recorded as taking 0 s")
        self.assertLess(took, 5.0)
        # not whole milliseconds: the clock read has µs resolution
        ms = took * 1000.0
        self.assertGreater(abs(ms - round(ms)), 1e-6,
                           "sum %r s is a whole number of ms" % took)


if __name__ == "__main__":
    import unittest
    unittest.main()
