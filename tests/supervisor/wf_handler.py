#!/usr/bin/env python3
"""wf_handler.py - a stream-mode handler for the workflow tests.

It answers each task with {"id": <task id>, "parents": <what it got>}, so
a test can see which results reached a task through "parents".  A payload
{"fail": true} makes the task fail; {"sleep_ms": N} makes it take that
long.
"""
import json
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    payload = task.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    if payload.get("sleep_ms"):
        time.sleep(payload["sleep_ms"] / 1000.0)
    if payload.get("fail"):
        answer = {"id": task["id"], "status": "error", "error": "asked to fail"}
    else:
        answer = {"id": task["id"], "status": "ok",
                  "result": {"id": task["id"],
                             "parents": task.get("parents") or {}}}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
