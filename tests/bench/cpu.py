#!/usr/bin/env python3
"""CPU time consumed so far by a process, or by a whole process group, read
from /proc/<pid>/stat (utime + stime, in clock ticks) and printed in
microseconds.

    cpu.py --pid PID      one process (all its threads: the thread-group
                          leader's stat already sums every thread)
    cpu.py --pgid PGID    every live process whose process group is PGID
                          (nginx: master + worker)
    cpu.py --hz           the clock-tick rate used for the conversion

The figure is tick-granular: with SC_CLK_TCK = 100 one tick is 10 000 us,
so a measured run must burn many ticks (seconds of CPU) for a per-request
figure to mean anything. Time of children that already exited and were
reaped (cutime/cstime) is not counted: the servers measured here do not
fork per request.
"""

import argparse
import os
import sys

HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name, or None when the
    process is gone. fields[0] is field 3 (state) of proc(5)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name is in parentheses and may itself contain ") "
    return raw[raw.rindex(")") + 2:].split()


def ticks_of_pid(pid):
    f = _stat_fields(pid)
    if f is None:
        raise SystemExit("cpu.py: no process %d" % pid)
    # proc(5): utime is field 14, stime field 15 -> indexes 11, 12 here
    return int(f[11]) + int(f[12])


def ticks_of_pgid(pgid):
    total, seen = 0, 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is None or int(f[2]) != pgid:  # field 5: pgrp
            continue
        total += int(f[11]) + int(f[12])
        seen += 1
    if seen == 0:
        raise SystemExit("cpu.py: no process in group %d" % pgid)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--pid", type=int)
    g.add_argument("--pgid", type=int)
    g.add_argument("--hz", action="store_true")
    a = ap.parse_args()
    if a.hz:
        print(HZ)
        return 0
    t = ticks_of_pid(a.pid) if a.pid is not None else ticks_of_pgid(a.pgid)
    print(t * 1000000 // HZ)
    return 0


if __name__ == "__main__":
    sys.exit(main())
