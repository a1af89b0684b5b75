#!/usr/bin/env python3
"""dead_handler.py - a stream-mode handler for the dead-letter tests.

A payload {"flag": PATH} makes the handler die (exit 1, no answer) on
the task while the file PATH exists, so that the task runs out of
attempts; once the file is gone it answers.  {"hold": PATH}: the answer
waits while PATH exists (the test removes it).  The answer's result is
{"attempt": the task's attempt, "payload": its payload, "parents": its
parents}.
"""
import json
import os
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    payload = task.get("payload")
    p = payload if isinstance(payload, dict) else {}
    if p.get("flag") and os.path.exists(p["flag"]):
        os._exit(1)
    while p.get("hold") and os.path.exists(p["hold"]):
        time.sleep(0.02)
    sys.stdout.write(json.dumps({
        "id": task["id"],
        "status": "ok",
        "result": {"attempt": task.get("attempt"), "payload": payload,
                   "parents": task.get("parents")},
    }) + "\n")
    sys.stdout.flush()
