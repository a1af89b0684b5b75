#!/usr/bin/env python3
"""summary.py - a stream-mode agent for the last step of a workflow.

A task of a workflow gets, in "parents", the results of the tasks it
depends on (docs/HANDLERS.md).  This one adds up the word counts that
wordcount.py tasks returned and names the most frequent words among them:

    task:    {"id": "...", "payload": {...},
              "parents": {"count-a": {"words": 5, "top": [["the", 2], ...]},
                          "count-b": {...}}, ...}
    result:  {"words": 12, "from": ["count-a", "count-b"],
              "top": [["the", 4], ...]}

A task without parents (not in a workflow) is an error.
"""
import json
import sys


def handle(task):
    parents = task.get("parents")
    if not isinstance(parents, dict) or not parents:
        return {"id": task["id"], "status": "error",
                "error": "no parents: run me as a step of a workflow"}
    words, top = 0, {}
    for result in parents.values():
        if not isinstance(result, dict):
            continue
        words += result.get("words", 0)
        for word, n in result.get("top", []):
            top[word] = top.get(word, 0) + n
    best = sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return {"id": task["id"], "status": "ok",
            "result": {"words": words, "from": sorted(parents),
                       "top": [[w, n] for w, n in best]}}


for line in sys.stdin:
    try:
        answer = handle(json.loads(line))
    except (ValueError, KeyError) as e:
        answer = {"id": json.loads(line).get("id", ""), "status": "error",
                  "error": f"bad task: {e}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
