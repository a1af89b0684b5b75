#!/usr/bin/env python3
"""counter.py - a stream-mode handler for hived's tests.

It counts the tasks its agent instance has run in the agent's memory
({"count": N}) and answers each task with the new count, so a test can
tell whether the memory survived a restart, a sleep or a reload.  A
payload {"sleep_ms": N} makes the task take that long (a task in flight
for the graceful-stop test).
"""
import json
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    memory = task.get("memory") or {}
    memory["count"] = memory.get("count", 0) + 1
    payload = task.get("payload")
    if isinstance(payload, dict) and payload.get("sleep_ms"):
        time.sleep(payload["sleep_ms"] / 1000.0)
    sys.stdout.write(json.dumps({
        "id": task["id"],
        "status": "ok",
        "result": {"count": memory["count"]},
        "memory": memory,
    }) + "\n")
    sys.stdout.flush()
