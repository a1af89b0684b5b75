#!/usr/bin/env python3
"""Count test cases from meson's testlog.json files.

A Criterion binary counts as its own test cases (its "Synthesis" line); any
other test counts as one case.  A binary that died before printing its
synthesis, or that meson saw fail while its cases all passed (a leak report,
a timeout), counts one more failure.  Prints "passed failed skipped".
"""
import json
import re
import sys

SYN = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError:
        continue
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            res = t.get("result", "")
            m = SYN.findall(re.sub(r"\x1b\[[0-9;]*m", "", out))
            if m:
                _, p, fl, cr = map(int, m[-1])
                passed += p
                failed += fl + cr
                if res not in ("OK", "EXPECTEDFAIL") and fl + cr == 0:
                    failed += 1
            elif res == "OK":
                passed += 1
            elif res == "SKIP":
                skipped += 1
            else:
                failed += 1
print(passed, failed, skipped)
