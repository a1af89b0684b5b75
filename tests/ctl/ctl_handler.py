#!/usr/bin/env python3
"""ctl_handler.py - a stream-mode handler for hivectl's tests.

It answers each task with {"echo": <its payload>}.  A payload
{"fail": "why"} makes the task fail with that error; {"die_unless": PATH}
kills the worker running it (SIGKILL) unless PATH exists, so the task
goes to the dead letters once its attempts are used up, and succeeds
once the test has made PATH (a dead letter retried); {"sleep_ms": N}
makes the task take that long.
"""
import json
import os
import signal
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    payload = task.get("payload")
    p = payload if isinstance(payload, dict) else {}
    if p.get("die_unless") and not os.path.exists(p["die_unless"]):
        os.kill(os.getppid(), signal.SIGKILL)
        sys.exit(1)
    if p.get("sleep_ms"):
        time.sleep(p["sleep_ms"] / 1000.0)
    if p.get("fail"):
        answer = {"id": task["id"], "status": "error", "error": p["fail"]}
    else:
        answer = {"id": task["id"], "status": "ok",
                  "result": {"echo": payload}}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
