#!/usr/bin/env python3
"""usage_handler.py - a stream-mode handler for the usage and trace tests.

It answers each task with its payload's "usage" as the answer's usage and
the traceparent it was given (and TRACEPARENT of its environment) as the
result, so a test sees what reached the handler and what it reported.
"""
import json
import os
import sys

for line in sys.stdin:
    task = json.loads(line)
    payload = task.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    answer = {"id": task["id"], "status": "ok",
              "result": {"traceparent": task.get("traceparent"),
                         "env": os.environ.get("TRACEPARENT")}}
    if "usage" in payload:
        answer["usage"] = payload["usage"]
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
