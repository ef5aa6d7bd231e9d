#!/usr/bin/env python3
"""The layering rule of core/ (docs/ARCHITECTURE.md), checked on every
#include "..." of every file under core/:

  * includes name the folder ("http/http.h"); the include root is core/;
  * a file includes function headers of its own folder and of folders
    below it in ORDER (peers on one rank do not include each other);
  * any file may include a types-only header (*-t.h);
  * a types-only header includes only other *-t.h headers or base/ ones;
  * every folder of core/ has a place in ORDER.

Prints one line per violation, file:line first, and exits 1 if any.
Usage: check_layers.py [CORE_DIR]
"""
import os
import re
import sys

# Lowest first; folders on one line share a rank.
ORDER = [
    ["base"],
    ["problem", "config", "policy"],
    ["state"],
    ["obs"],
    ["http"],
    ["upstream", "identity"],
    ["host"],
    ["gateway"],
    ["proc"],
]
RANK = {f: r for r, fs in enumerate(ORDER) for f in fs}
# Quoted includes that are not core/ headers: the public SDK (include/),
# llhttp's header and the generated version header.
EXTERNAL_DIRS = {"bulkhead"}
EXTERNAL_FILES = {"llhttp.h", "bh_version.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def is_types_only(path):
    return path.endswith("-t.h")


def check_file(core, rel, out):
    folder = rel.split("/", 1)[0]
    with open(os.path.join(core, rel), encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        inc = m.group(1)
        where = "core/%s:%d" % (rel, n)
        if "/" not in inc:
            if inc not in EXTERNAL_FILES:
                out.append('%s: #include "%s" does not name its folder '
                           '(write "<folder>/%s")' % (where, inc, inc))
            continue
        target = inc.split("/", 1)[0]
        if target in EXTERNAL_DIRS:
            continue
        if target not in RANK:
            out.append('%s: #include "%s": no folder "%s" in the layer '
                       'order' % (where, inc, target))
            continue
        if not os.path.isfile(os.path.join(core, inc)):
            out.append('%s: #include "%s": no such file under core/' %
                       (where, inc))
            continue
        if is_types_only(rel):
            if not is_types_only(inc) and target != "base":
                out.append('%s: types-only header includes "%s": a -t.h '
                           'header includes only -t.h or base/ headers' %
                           (where, inc))
            continue
        if is_types_only(inc) or target == folder:
            continue
        if RANK[target] >= RANK[folder]:
            how = "above" if RANK[target] > RANK[folder] else "beside"
            out.append('%s: #include "%s" points up: %s (layer %d) may not '
                       'include %s (layer %d, %s it); reach it through a '
                       'hook or move the types to a -t.h header' %
                       (where, inc, folder, RANK[folder], target,
                        RANK[target], how))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    core = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(here, "..", "..", "core"))
    out = []
    for entry in sorted(os.listdir(core)):
        full = os.path.join(core, entry)
        if os.path.isdir(full) and entry not in RANK:
            out.append("core/%s/: folder not in the layer order "
                       "(tests/layers/check_layers.py ORDER)" % entry)
        elif os.path.isfile(full) and entry.endswith((".c", ".h")):
            out.append("core/%s: file outside any folder" % entry)
    nfiles = 0
    for folder in sorted(RANK):
        root = os.path.join(core, folder)
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                if name.endswith((".c", ".h")):
                    rel = os.path.relpath(os.path.join(dirpath, name), core)
                    check_file(core, rel, out)
                    nfiles += 1
    for line in out:
        print(line)
    if out:
        print("layering: %d violation(s) in %d files" % (len(out), nfiles))
        return 1
    print("layering: %d files, every include points down or is types-only" %
          nfiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
