#!/usr/bin/python3
"""ui_handler.py - a stream-mode handler for the dashboard's browser test.

Payload {"flag": PATH}: dies (exit 1, no answer) while PATH exists, so
that a task with one attempt becomes a dead letter.  {"hold": PATH}: the
answer waits while PATH exists.  {"say": TEXT}: TEXT is written to
stderr (the agent's output) first.  Then it answers ok, with the
payload's "usage" as the answer's usage.
"""
import json
import os
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    p = task.get("payload")
    p = p if isinstance(p, dict) else {}
    if p.get("flag") and os.path.exists(p["flag"]):
        os._exit(1)
    if p.get("say"):
        sys.stderr.write(p["say"] + "\n")
        sys.stderr.flush()
    while p.get("hold") and os.path.exists(p["hold"]):
        time.sleep(0.02)
    answer = {"id": task["id"], "status": "ok", "result": {}}
    if p.get("usage"):
        answer["usage"] = p["usage"]
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
