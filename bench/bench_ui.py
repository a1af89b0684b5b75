#!/usr/bin/python3
"""bench_ui.py [-n TASKS] [-r RATE] - event-to-browser latency of the
dashboard (bench/README.md, "The dashboard").

hived (Redis and PostgreSQL: task events come from the recorder) runs
an agent whose handler fails every task; TASKS tasks are submitted at
RATE a second, each a `task` event of its own (events_task_rate is set
out of reach: the recorder, behind on a busy machine, catches up in
bursts).  For each failed task:

  hived sees it       the event's "at" (hived's clock, ms)
  -> the page shows it   a MutationObserver in the dashboard (headless
                      chromium) sees the task's row added to "Recent
                      failures" and notes the time (performance.timeOrigin +
                      performance.now(): Date.now() in finer steps)
  ceiling             the same event read by a plain SSE client (a
                      socket in this process, no browser): time.time()
                      as its last byte arrives

Both clocks are this machine's.  Prints `name: value unit (...)` lines.
Needs HIVE_BUILD_DIR, HIVE_SOURCE_DIR and the services' environment
(bench/run sets them).
"""
import argparse
import datetime
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "ui"))
import hivedproc  # noqa: E402
from hivedproc import Hived  # noqa: E402

HANDLER = r'''
import json, sys
for line in sys.stdin:
    t = json.loads(line)
    sys.stdout.write(json.dumps({"id": t["id"], "status": "error",
                                 "error": "bench"}) + "\n")
    sys.stdout.flush()
'''


def at_ms(s):
    d = datetime.datetime.strptime(s.replace("Z", "+0000"),
                                   "%Y-%m-%dT%H:%M:%S.%f%z")
    return d.timestamp() * 1000.0


class Plain(threading.Thread):
    """GET /events?types=task over a bare socket; the arrival time of
    each failed task's event, by task id."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.seen = {}
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.sendall(b"GET /events?types=task HTTP/1.1\r\n"
                       b"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")

    def run(self):
        buf = b""
        while True:
            b = self.s.recv(65536)
            now = time.time() * 1000.0
            if not b:
                return
            buf += b
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                for line in ev.split(b"\n"):
                    if line.startswith(b"data: {"):
                        d = json.loads(line[6:])
                        if d.get("state") == "failed" and "id" in d:
                            self.seen[d["id"]] = (at_ms(d["at"]), now)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-r", type=float, default=20.0)
    a = ap.parse_args()

    if not os.environ.get("HIVE_TEST_PG"):
        sys.exit("bench_ui: HIVE_TEST_PG is not set (task events come "
                 "from the recorder, which needs PostgreSQL)")
    tmp = tempfile.mkdtemp(prefix="bench-ui-")
    handler = os.path.join(tmp, "fail.py")
    with open(handler, "w") as f:
        f.write(HANDLER)
    drv = hivedproc.browser(tmp)
    # events_task_rate out of reach: the recorder, behind on a busy
    # machine, catches up in bursts, and a burst past the rate would be
    # counted (a `tasks` event) rather than sent task by task.
    h = Hived("benchui", '[agent "f"]\ncommand = /usr/bin/python3 %s\n'
              'capabilities = fail\nmax_attempts = 1\n' % handler,
              "events_task_rate = 1000000\n")
    try:
        h.start()
        plain = Plain(h.port)
        plain.start()
        drv.get(h.url + "/")
        drv.execute_script("""
            window.dom = {};
            new MutationObserver((ms) => {
                const t = performance.timeOrigin + performance.now();
                for (const m of ms)
                    for (const n of m.addedNodes)
                        if (n.dataset && n.dataset.task &&
                            !(n.dataset.task in window.dom))
                            window.dom[n.dataset.task] = t;
            }).observe(document.querySelector('#failed tbody'),
                       {childList: true});
        """)
        hivedproc.Hived.wait(lambda: drv.execute_script(
            "return document.getElementById('live').className") == "live on",
            30, "the page's event stream")
        ids = ["b%d-%d" % (os.getpid(), i) for i in range(a.n)]
        t0 = time.monotonic()
        for i, tid in enumerate(ids):
            st, r = h.post("/tasks", {"capability": "fail", "id": tid})
            assert st == 201, (st, r)
            pause = t0 + (i + 1) / a.r - time.monotonic()
            if pause > 0:
                time.sleep(pause)     # pacing the load, not waiting
        h.wait(lambda: all(t in plain.seen for t in ids) and drv.execute_script(
            "return Object.keys(window.dom).length") >= len(ids), 60,
            "every failed task in both clients")
        dom = drv.execute_script("return window.dom")
        page = [dom[t] - plain.seen[t][0] for t in ids]
        bare = [plain.seen[t][1] - plain.seen[t][0] for t in ids]
        n = len(ids)
        for p in (50, 99):
            print("ui.event_to_dom.p%d: %.1f ms (hived's event -> the page's"
                  " DOM, %d events at %g/s; ceiling ui.event_to_sse.p%d)"
                  % (p, pct(page, p), n, a.r, p))
            print("ui.event_to_sse.p%d: %.1f ms (the same events, a plain "
                  "SSE client without a browser)" % (p, pct(bare, p)))
        print("ui.event_to_dom.max: %.1f ms" % max(page))
    finally:
        try:
            drv.quit()
        finally:
            h.cleanup()


if __name__ == "__main__":
    main()
