#!/usr/bin/python3
"""The demo's client: an ordinary Redis + msgpack program, as any user's
would be (docs/PROTOCOL.md is all it knows), plus hived's HTTP API.

    demo_client.py --redis HOST:PORT --prefix P --http URL --token FILE [--pg CONNINFO]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import msgpack
import redis

BOLD = "\033[1m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
OFF = "\033[0m" if sys.stdout.isatty() else ""


def say(msg):
    print(f"\n{BOLD}== {msg}{OFF}", flush=True)


class Hive:
    def __init__(self, args):
        host, port = args.redis.rsplit(":", 1)
        self.r = redis.Redis(host=host, port=int(port))
        self.p = args.prefix
        self.http = args.http
        self.token = open(args.token).read().strip()
        self.reply = f"hive:reply:demo-{os.getpid()}"
        self.n = 0

    def submit(self, queue, payload, prio=1, **extra):
        """XADD one task; returns its id."""
        self.n += 1
        tid = f"demo-{os.getpid()}-{self.n}"
        msg = {"v": 1, "id": tid, "payload": payload, "reply_to": self.reply,
               "created_ms": int(time.time() * 1000)}
        msg.update(extra)
        self.r.xadd(f"{self.p}:q:{queue}:{prio}", {"m": msgpack.packb(msg)})
        return tid

    def results(self, ids, timeout=60):
        """Read our reply stream until every id in ids has its result."""
        want, got, last = set(ids), {}, "0"
        deadline = time.time() + timeout
        while want - set(got) and time.time() < deadline:
            rep = self.r.xread({self.reply: last}, block=1000, count=100)
            for _, entries in rep:
                for eid, fields in entries:
                    last = eid
                    res = msgpack.unpackb(fields[b"m"], raw=False)
                    if res["id"] in want:
                        got[res["id"]] = res
        missing = want - set(got)
        if missing:
            sys.exit(f"demo: no result for {len(missing)} tasks after {timeout}s")
        return [got[i] for i in ids]

    def agents(self):
        with urllib.request.urlopen(f"{self.http}/agents", timeout=5) as f:
            return json.load(f)["agents"]

    def post(self, path):
        req = urllib.request.Request(f"{self.http}{path}", method="POST",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as f:
            return json.load(f)

    def instance(self, label):
        for a in self.agents():
            if a.get("agent") == label:
                return a
        return None

    def wait_ready(self, label, not_pid=None, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            a = self.instance(label)
            if a and a.get("state") == "ready" and a.get("pid") and a["pid"] != not_pid:
                return a
            time.sleep(0.005)
        sys.exit(f"demo: {label} not ready after {timeout}s")


def show(res):
    if res["status"] == "ok":
        out = json.dumps(res.get("result"))
    else:
        out = "error: " + res.get("error", "")
    print(f"  {res['id']:<16} {res['agent']:<11} attempt {res.get('attempt', 1)}  {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pg")
    args = ap.parse_args()
    h = Hive(args)

    say("agents under hived")
    for a in h.agents():
        print(f"  {a['agent']:<11} {a['state']:<9} pid {a.get('pid')}")

    say("the counter agent (Python, stream mode) counts words and remembers")
    lines = ["the quick brown fox", "jumps over the lazy dog",
             "the dog sleeps", "a fox is quick"]
    for res in h.results([h.submit("text", {"text": t}) for t in lines]):
        show(res)

    say("the shouter agent (shell, exec mode: one process per task)")
    for res in h.results([h.submit("shout", t) for t in ["hello", "hive", ""]]):
        show(res)

    say("the echo agent (C, stream mode): 2,000 tasks, 2 instances x 4 in flight")
    t0 = time.time()
    ids = [h.submit("echo", {"n": i}) for i in range(2000)]
    res = h.results(ids)
    dt = time.time() - t0
    by = {}
    for r in res:
        by[r["agent"]] = by.get(r["agent"], 0) + 1
    print(f"  2000 results in {dt:.2f}s (submit, run, read back): "
          + ", ".join(f"{k} did {v}" for k, v in sorted(by.items())))

    say("kill -9 the counter's worker in the middle of 300 tasks")
    before = res_total = None
    a = h.instance("counter/1")
    print(f"  counter/1 pid {a['pid']}, memory version {a.get('memory_v')}")
    last = h.results([h.submit("text", {"text": "warm up"})])[0]
    before = last["result"]["total"]
    ids = [h.submit("text", {"text": "one two three"}) for _ in range(300)]
    first = h.results(ids[:60])
    t0 = time.time()
    os.kill(a["pid"], signal.SIGKILL)
    b = h.wait_ready("counter/1", not_pid=a["pid"])
    print(f"  killed after {len(first)} results; hived restarted it: pid {b['pid']} "
          f"ready {1000 * (time.time() - t0):.0f} ms after the kill, "
          f"memory version {b.get('memory_v')}")
    rest = h.results(ids)
    again = sum(1 for r in rest if r.get("attempt", 1) > 1)
    res_total = max(r["result"]["total"] for r in rest)
    print(f"  all 300 results are in ({again} ran a second time after the kill); "
          f"words counted: {res_total - before} of {3 * 300} expected")
    print(f"  {DIM}(no task lost, none counted twice: the memory travels with each "
          f"acknowledged result, so a task re-run after the kill starts from the "
          f"memory of the last finished one){OFF}")
    if res_total - before != 900:
        sys.exit("demo: the count is wrong")

    say("a malformed task goes to the dead-letter stream with a reason")
    h.r.xadd(f"{h.p}:q:echo:1", {"m": b"\x93\x01\x02"})
    deadline = time.time() + 20
    dead = []
    while not dead and time.time() < deadline:
        dead = h.r.xrange(f"{h.p}:dead", "-", "+")
        time.sleep(0.05)
    for _, f in dead[-1:]:
        d = msgpack.unpackb(f[b"m"], raw=False)
        print(f"  dead letter: reason \"{d['reason']}\" (from {d['stream']})")

    if args.pg:
        say("a workflow: two texts counted side by side, then a summary of both")
        wid = f"demo-wf-{os.getpid()}"
        ta, tb, ts = f"{wid}-count-a", f"{wid}-count-b", f"{wid}-summary"
        wf = {"v": 1, "id": wid, "name": "wordcount-report", "tasks": [
            {"id": ta, "capability": "text",
             "payload": {"text": "the cat and the dog and the bird"}},
            {"id": tb, "capability": "text",
             "payload": {"text": "a dog a cat"}},
            {"id": ts, "capability": "summary", "depends_on": [ta, tb],
             "reply_to": h.reply},
        ]}
        h.r.xadd(f"{h.p}:workflows", {"m": msgpack.packb(wf)})
        print(f"  {DIM}XADD {h.p}:workflows: {ta} and {tb} (agent counter), "
              f"then {ts} (agent summary), which depends on both{OFF}")
        res = h.results([ts])[0]
        show(res)
        if res["status"] != "ok" or res["result"].get("words") != 12:
            sys.exit("demo: the workflow's summary is wrong")
        deadline = time.time() + 20
        ended = None
        while ended is None and time.time() < deadline:
            for _, f in h.r.xrange(f"{h.p}:events", "-", "+"):
                e = msgpack.unpackb(f[b"m"], raw=False)
                if e.get("workflow") == wid:
                    ended = e
            time.sleep(0.05)
        if ended is None:
            sys.exit("demo: no event for the workflow's end")
        print(f"  event {ended['kind']}: {ended.get('reason', '')}")

        say("the record in PostgreSQL")
        time.sleep(1.5)
        q = ("SELECT state, count(*) FROM tasks GROUP BY state ORDER BY 1;"
             "SELECT agent, max(version) AS memory_version, count(*) AS snapshots "
             "FROM memory_snapshots GROUP BY agent ORDER BY 1;"
             "SELECT id, name, state, finished_at - created_at AS took "
             "FROM workflows;")
        subprocess.run(["psql", "-X", "-q", args.pg, "-c", q], check=False)


if __name__ == "__main__":
    main()
