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

While it adds, it shows its progress (docs/HANDLERS.md, Progress and
partial output): a chunk of text per parent and a progress object, which
`hivectl wait ID --follow` prints as they come.
"""
import json
import sys


def put(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def handle(task):
    parents = task.get("parents")
    if not isinstance(parents, dict) or not parents:
        return {"id": task["id"], "status": "error",
                "error": "no parents: run me as a step of a workflow"}
    words = 0
    for i, (name, r) in enumerate(sorted(parents.items())):
        n = r.get("words", 0) if isinstance(r, dict) else 0
        words += n
        put({"id": task["id"], "chunk": f"{name}: {n} words\n",
             "progress": {"parents": i + 1, "of": len(parents)}})
    return {"id": task["id"], "status": "ok",
            "result": {"words": words, "from": sorted(parents)}}


for line in sys.stdin:
    try:
        answer = handle(json.loads(line))
    except (ValueError, KeyError) as e:
        answer = {"id": json.loads(line).get("id", ""), "status": "error",
                  "error": f"bad task: {e}"}
    put(answer)
