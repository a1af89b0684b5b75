#!/usr/bin/env python3
"""A stream handler that writes progress and chunk lines, steered by the
task's payload {"op": ...}:

  chunks    {"n": N}: chunk "c<i> " for i < N, one line each, then ok
  progress  {"n": N}: progress {"i": i} for i < N, then ok
  both      one line with a progress and a chunk, then ok
  unknown   a chunk for the task "nope-<id>", then ok
  bad       a line whose "progress" is not an object, then ok
  none      ok, no output
  fail      chunk "before failing", then an error
  gate      {"fifo": PATH, "n": N}: chunks "a0 ".."a<N-1> ", then wait for a
            byte on PATH, then chunk "b", then ok
  quiet     {"fifo": PATH}: wait for a byte on PATH, then ok (no output)
  paced     {"n": N}: N chunks "p<i> " (a pause of 20 ms between them:
            the reader sees them arrive), then ok
"""
import json
import sys
import time


def put(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    task = json.loads(line)
    tid, p = task["id"], task.get("payload") or {}
    op = p.get("op")
    if op == "chunks":
        for i in range(p["n"]):
            put({"id": tid, "chunk": "c%d " % i})
    elif op == "progress":
        for i in range(p["n"]):
            put({"id": tid, "progress": {"i": i}})
    elif op == "both":
        put({"id": tid, "progress": {"step": 1}, "chunk": "x"})
    elif op == "unknown":
        put({"id": "nope-" + tid, "chunk": "lost"})
    elif op == "bad":
        put({"id": tid, "progress": 7, "chunk": "kept"})
    elif op == "fail":
        put({"id": tid, "chunk": "before failing"})
        put({"id": tid, "status": "error", "error": "asked to"})
        continue
    elif op == "gate":
        for i in range(p.get("n", 1)):
            put({"id": tid, "chunk": "a%d " % i})
        with open(p["fifo"], "rb") as f:
            f.read(1)
        put({"id": tid, "chunk": "b"})
    elif op == "quiet":
        with open(p["fifo"], "rb") as f:
            f.read(1)
    elif op == "paced":
        for i in range(p["n"]):
            put({"id": tid, "chunk": "p%d " % i})
            time.sleep(0.02)
    put({"id": tid, "status": "ok", "result": {"done": True}})
