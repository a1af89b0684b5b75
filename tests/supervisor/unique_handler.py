#!/usr/bin/env python3
"""unique_handler.py - a stream-mode handler for the unique-task tests.

A payload {"hold": PATH} makes the answer wait while the file PATH
exists (the test removes it); {"fail": true} answers an error;
{"fail": true, "retry_after": S} asks for a retry after S seconds (the
agent retries errors); {"die": PATH} makes the handler die (exit 1, no answer) while PATH
exists, so that the task is retried and, out of attempts, dead-lettered.
"""
import json
import os
import sys
import time

for line in sys.stdin:
    task = json.loads(line)
    p = task.get("payload")
    p = p if isinstance(p, dict) else {}
    if p.get("die") and os.path.exists(p["die"]):
        os._exit(1)
    while p.get("hold") and os.path.exists(p["hold"]):
        time.sleep(0.02)
    if p.get("fail"):
        answer = {"id": task["id"], "status": "error", "error": "asked to"}
        if "retry_after" in p:
            answer["retry_after"] = p["retry_after"]
    else:
        answer = {"id": task["id"], "status": "ok",
                  "result": {"attempt": task.get("attempt")}}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
