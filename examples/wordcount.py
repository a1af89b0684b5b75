#!/usr/bin/env python3
"""wordcount.py - a stream-mode agent that remembers.

It counts the words of each task's text and keeps, in the agent's memory,
how often it has seen every word and how many words in all.  The memory
comes with every task and goes back with every answer; hive-worker
publishes it with the result and hived keeps it, so the counts survive a
crash, a restart or a move to another host.

    hive-worker --agent counter --capabilities text -- python3 examples/wordcount.py

Task payload: {"text": "the cat and the dog"}
Result:       {"words": 5, "total": 5, "top": [["the", 2], ...]}
"""
import json
import sys


def handle(task):
    memory = task.get("memory") or {}
    seen = memory.get("seen", {})
    text = (task.get("payload") or {}).get("text")
    if not isinstance(text, str):
        return {"id": task["id"], "status": "error",
                "error": "payload must be {\"text\": \"...\"}"}
    words = text.lower().split()
    for w in words:
        seen[w] = seen.get(w, 0) + 1
    total = memory.get("total", 0) + len(words)
    top = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return {
        "id": task["id"],
        "status": "ok",
        "result": {"words": len(words), "total": total, "top": top},
        "memory": {"seen": seen, "total": total},
    }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(json.loads(line))
        except Exception as e:  # one bad task must not end the agent
            answer = {"id": json.loads(line).get("id", ""), "status": "error",
                      "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
