#!/usr/bin/env python3
"""summary.py - a stream-mode agent for the last step of a workflow.

A task of a workflow gets, in "parents", the results of the tasks it
depends on (docs/HANDLERS.md).  This one adds up the word counts that
wordcount.py tasks returned:

    task:    {"id": "...", "payload": {...}, "memory": {...},
              "parents": {"count-a": {"words": 8, ...},
                          "count-b": {"words": 4, ...}}}
    result:  {"words": 12, "from": ["count-a", "count-b"]}

A task without parents (not in a workflow) is an error.
"""
import json
import sys


def handle(task):
    parents = task.get("parents")
    if not isinstance(parents, dict) or not parents:
        return {"id": task["id"], "status": "error",
                "error": "no parents: run me as a step of a workflow"}
    words = sum(r.get("words", 0) for r in parents.values()
                if isinstance(r, dict))
    return {"id": task["id"], "status": "ok",
            "result": {"words": words, "from": sorted(parents)}}


for line in sys.stdin:
    try:
        answer = handle(json.loads(line))
    except (ValueError, KeyError) as e:
        answer = {"id": json.loads(line).get("id", ""), "status": "error",
                  "error": f"bad task: {e}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
