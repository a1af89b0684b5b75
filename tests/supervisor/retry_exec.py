#!/usr/bin/env python3
"""retry_exec.py - an exec-mode handler for the retry tests: one task on
stdin.  A payload {"fail_until": N} fails (exit 1, "boom <attempt>" on
stderr) every attempt below N, printing the payload's "retryable" and
"retry_after" as a JSON object on stdout; then it answers the attempt."""
import json
import sys

task = json.loads(sys.stdin.readline())
p = task.get("payload") or {}
attempt = task.get("attempt", 1)
if attempt < p.get("fail_until", 0):
    print(json.dumps({k: p[k] for k in ("retryable", "retry_after")
                      if k in p}))
    sys.stderr.write("boom %d\n" % attempt)
    sys.exit(1)
print(json.dumps({"result": {"attempt": attempt}}))
