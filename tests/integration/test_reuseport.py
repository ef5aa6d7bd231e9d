"""Workers on their own listening sockets (SO_REUSEPORT, one per worker,
made by the master): fresh connections spread over the workers instead of
piling onto whichever worker the kernel woke first on one shared queue.
Reload and crash keep the group whole (test_reload_drain.py and
test_crash_containment.py run on it)."""

import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, RawConn, echo_section  # noqa: E402
from workers import pid_of, wait_workers  # noqa: E402

CONNECTIONS = 200


class ReuseportTest(unittest.TestCase):

    def spread(self, d):
        seen = collections.Counter()
        for _ in range(CONNECTIONS):
            c = RawConn(d.port())
            try:
                seen[pid_of(c)] += 1
            finally:
                c.close()
        return seen

    def test_fresh_connections_reach_every_worker_fairly(self):
        d = Daemon({"server": {"workers": 2},
                    "plugin.echo": echo_section()})
        try:
            pids = wait_workers(d, 2)
            seen = self.spread(d)
            self.assertEqual(sorted(seen), sorted(pids), seen)
            for pid in pids:
                self.assertGreaterEqual(seen[pid], CONNECTIONS * 35 // 100,
                                        "worker %d got %r" % (pid, seen))
            # a crashed worker's socket goes to its replacement: the spread
            # stays fair (no socket left without a worker)
            os.kill(pids[0], 9)
            new = wait_workers(d, 2, exclude=[pids[0]], timeout=15)
            seen = self.spread(d)
            self.assertEqual(sorted(seen), sorted(new), seen)
            for pid in new:
                self.assertGreaterEqual(seen[pid], CONNECTIONS * 35 // 100,
                                        "worker %d got %r" % (pid, seen))
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
