#!/usr/bin/env python3
"""CPU time consumed so far, read from /proc, printed in microseconds.

    cpu.py SPEC...   prints one line: the CLOCK_MONOTONIC time in
                     microseconds, then one figure per SPEC, in order
    cpu.py --hz      prints the clock-tick rate used for the conversion

SPEC is one of
    pid:N     process N, all its threads (the thread-group leader's
              /proc/N/stat already sums every thread): utime + stime
    pgid:N    every live process whose process group is N, summed
              (nginx: master + worker)
    core:N    busy time of core N, every process included (user + nice +
              system + irq + softirq from /proc/stat): compared with the
              server's own time it shows whether something else ran on
              the server's core; core:N,M,... sums several cores

All figures of one line are read at the same moment, so two lines give a
window and the CPU spent in it. They are tick-granular: with SC_CLK_TCK =
100 one tick is 10 000 us, so a measured run must burn many ticks (seconds
of CPU) for a per-request figure to mean anything. Time of children that
already exited (cutime/cstime) is not counted: the servers measured here do
not fork per request.
"""

import os
import sys
import time

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


def ticks_of_core(cores):
    want = set("cpu%d" % n for n in cores)
    total, seen = 0, set()
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in want:
                # user nice system idle iowait irq softirq steal ...
                v = [int(x) for x in parts[1:8]]
                total += v[0] + v[1] + v[2] + v[5] + v[6]
                seen.add(parts[0])
    if seen != want:
        raise SystemExit("cpu.py: no core %s in /proc/stat"
                         % ",".join(sorted(want - seen)))
    return total


KINDS = {"pid": ticks_of_pid, "pgid": ticks_of_pgid, "core": ticks_of_core}


def main(argv):
    if argv == ["--hz"]:
        print(HZ)
        return 0
    specs = []
    for a in argv:
        kind, _, num = a.partition(":")
        nums = num.split(",")
        if (kind not in KINDS or not all(n.isdigit() for n in nums) or
                (kind != "core" and len(nums) != 1)):
            sys.stderr.write(__doc__)
            return 2
        arg = [int(n) for n in nums] if kind == "core" else int(num)
        specs.append((KINDS[kind], arg))
    if not specs:
        sys.stderr.write(__doc__)
        return 2
    now = time.monotonic_ns() // 1000
    vals = [fn(n) * 1000000 // HZ for fn, n in specs]
    print(" ".join(str(v) for v in [now] + vals))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
