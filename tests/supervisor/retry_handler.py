#!/usr/bin/env python3
"""retry_handler.py - a stream-mode handler for the retry tests.

A payload {"fail_until": N} fails every attempt below N with the error
"boom <attempt>" (then answers ok); "retryable": false and
"retry_after": SECONDS are copied into the error answer.
"""
import json
import sys

for line in sys.stdin:
    task = json.loads(line)
    p = task.get("payload") or {}
    attempt = task.get("attempt", 1)
    if attempt < p.get("fail_until", 0):
        answer = {"id": task["id"], "status": "error",
                  "error": "boom %d" % attempt}
        for k in ("retryable", "retry_after"):
            if k in p:
                answer[k] = p[k]
    else:
        answer = {"id": task["id"], "status": "ok",
                  "result": {"attempt": attempt}}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
