#!/usr/bin/env python3
"""A stream handler for the cancel tests (tests/worker/test_cancel.c).
argv[1] (optional): a fifo the test reads, told "start ID" when a task starts and
"cancel ID" when the cancel line for it comes.  The payload steers it:

  {"op": "ok"}                   answer ok at once
  {"op": "hang", "obey": true}   no answer; an error answer to its cancel
  {"op": "hang"}                 no answer, the cancel line ignored
"""
import json
import sys

tell = open(sys.argv[1] if len(sys.argv) > 1 else "/dev/null", "w",
            buffering=1)


def put(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


obey = {}
for line in sys.stdin:
    msg = json.loads(line)
    if "cancel" in msg:
        tid = msg["cancel"]
        tell.write("cancel %s\n" % tid)
        if obey.get(tid):
            put({"id": tid, "status": "error", "error": "stopped"})
        continue
    tid, p = msg["id"], msg.get("payload") or {}
    tell.write("start %s\n" % tid)
    if p.get("op") == "hang":
        obey[tid] = bool(p.get("obey"))
        continue
    put({"id": tid, "status": "ok", "result": p})
