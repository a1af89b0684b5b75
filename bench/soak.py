#!/usr/bin/python3
"""The soak test of Hive, run by bench/soak (which builds, starts a private
Redis and PostgreSQL and sets the environment; see bench/README.md).

hived runs three stream-mode agents of the C echo handler (examples/echo.c)
with PostgreSQL configured, so that its recorder runs:

    echo-a  2 instances, concurrency 8, capability echo-a   } a random one of
    echo-b  2 instances, concurrency 8, capability echo-b   } these 4 workers is
                                                            } SIGKILLed every
                                                            } 20-60 s
    steady  1 instance,  concurrency 8, capability steady     never killed: its
                                                              RSS over the whole
                                                              run is the worker
                                                              leak figure

A client thread (redis-py and msgpack, as docs/PROTOCOL.md says) submits
tasks at a paced rate (default 1,000/s: the schedule, not the sleep, sets
the rate) round robin to the three capability queues, ids soak-0, soak-1,
..., each with reply_to one reply stream that a second thread reads (and
trims behind itself), marking each id that got a result.  Every 10 s the
main thread samples VmRSS of hived and of each hive-worker under it (from
/proc), Redis' used_memory, and the backlog.

When the duration is over: wait (up to 120 s) until every submitted task
has a result, then (up to 120 s) until PostgreSQL holds every one as
completed; print the soak.* lines, write the report, stop hived (SIGTERM,
it must exit 0).  Exit status 0 when no task was lost, 1 otherwise.

Slopes are least squares over the samples taken after the first minute,
in KB per minute: "flat" is a number near 0.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import json
import urllib.request

import msgpack
import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "scripts", "lib"))
from hiveprocs import processes, rss_kb, set_subreaper, reap_orphans  # noqa: E402

PREFIX = "soak"
# name, instances, killed now and then
AGENTS = [("echo-a", 2, True), ("echo-b", 2, True), ("steady", 1, False)]
CONCURRENCY = 8
SAMPLE_S = 10
KILL_MIN_S, KILL_MAX_S = 20, 60
DRAIN_S = 120
OWN_NAMES = ("hive-worker", "hive-echo")


class Stop(BaseException):
    """SIGTERM/SIGINT: unwind, stopping hived on the way out."""


RETAIN_MIN = 10        # record/record.h: retain_ms, 10 minutes
REDIS_FLAT_S = (RETAIN_MIN + 2) * 60   # Redis flat from here on

def log(msg):
    print(f"soak: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# ---- /proc --------------------------------------------------------------

def children(ppid, comm):
    """{pid: agent label} of the processes named comm whose parent is ppid;
    the label (name/instance) comes from the worker's command line."""
    out = {}
    for pid, (state, parent, name) in processes().items():
        if parent != ppid or name != comm:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        agent = argv[argv.index("--agent") + 1] if "--agent" in argv else "?"
        inst = argv[argv.index("--instance") + 1] if "--instance" in argv else "1"
        out[pid] = f"{agent}/{inst}"
    return out


# ---- the client ---------------------------------------------------------

class Submitter(threading.Thread):
    """n tasks at `rate` per second, round robin over `queues`, in what is
    due every 5 ms, pipelined.  `sent`: tasks Redis acknowledged."""

    def __init__(self, port, n, rate, queues, reply):
        super().__init__(daemon=True)
        self.port, self.n, self.rate, self.queues, self.reply = port, n, rate, queues, reply
        self.sent = 0
        self.stop = threading.Event()
        self.error = None
        self.t_first = self.t_last = None

    def run(self):
        try:
            self._run()
        except BaseException as e:   # reported by the main thread
            self.error = e

    def _run(self):
        r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        t0 = time.monotonic()
        self.t_first = t0
        i = 0
        while i < self.n and not self.stop.is_set():
            due = min(self.n, int((time.monotonic() - t0) * self.rate) + 1)
            if due <= i:
                time.sleep(max(0.005, t0 + i / self.rate - time.monotonic()))
                continue
            now = int(time.time() * 1000)
            p = r.pipeline(transaction=False)
            for k in range(i, due):
                p.xadd(self.queues[k % len(self.queues)],
                       {"m": msgpack.packb({"v": 1, "id": f"soak-{k}",
                                            "payload": {"n": k},
                                            "reply_to": self.reply,
                                            "created_ms": now})})
            p.execute()
            i = self.sent = due
        self.t_last = time.monotonic()
        r.close()


class Reader(threading.Thread):
    """Reads the reply stream from the start, marks each task id that got a
    result, and trims what it has read."""

    def __init__(self, port, n, reply):
        super().__init__(daemon=True)
        self.port, self.reply = port, reply
        self.seen = bytearray(n)
        self.completed = self.twice = self.errors = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            self._run()
        except BaseException as e:
            self.error = e

    def _run(self):
        r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        last = "0"
        while not self.stop.is_set():
            for _, entries in r.xread({self.reply: last}, block=500, count=2000):
                for _, f in entries:
                    m = msgpack.unpackb(f[b"m"], raw=False)
                    k = int(m["id"].rsplit("-", 1)[1])
                    if m.get("status") != "ok":
                        self.errors += 1
                    if self.seen[k]:
                        self.twice += 1
                    else:
                        self.seen[k] = 1
                        self.completed += 1
                last = entries[-1][0].decode()
                r.xtrim(self.reply, minid=last)
        r.delete(self.reply)
        r.close()


# ---- hived and the services ---------------------------------------------

CONF_HIVE = """\
[hive]
redis = 127.0.0.1:{redis_port}
prefix = {prefix}
host = soak-host
postgres = {pg}
http = 127.0.0.1:0
token_file = {dir}/token
stop_timeout = 10s
worker = {worker}
"""

CONF_AGENT = """
[agent:{name}]
command = {echo}
mode = stream
capabilities = {name}
instances = {instances}
concurrency = {concurrency}
max_attempts = 20
restart_limit = 1000000
restart_window = 1s
backoff = 10ms
backoff_max = 200ms
"""


def psql(pgbin, conninfo, sql):
    r = subprocess.run([f"{pgbin}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        conninfo, "-c", sql], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"psql: {r.stderr.strip()}")
    return r.stdout.strip()


def start_hived(o, pg):
    with open(os.path.join(o.dir, "token"), "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    conf = os.path.join(o.dir, "hive.conf")
    with open(conf, "w") as f:
        f.write(CONF_HIVE.format(redis_port=os.environ["HIVE_TEST_REDIS_PORT"],
                                 prefix=PREFIX, pg=pg, dir=o.dir,
                                 worker=os.environ["HIVE_WORKER"]))
        for name, inst, _ in AGENTS:
            f.write(CONF_AGENT.format(name=name, echo=os.environ["HIVE_ECHO"],
                                      instances=inst, concurrency=CONCURRENCY))
    portfile = os.path.join(o.dir, "port")
    logf = open(os.path.join(o.dir, "hived.log"), "ab")
    p = subprocess.Popen([os.environ["HIVED"], "--config", conf, "--port-file", portfile],
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    logf.close()
    end = time.monotonic() + 60
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"hived exited ({p.returncode}); see {o.dir}/hived.log")
        try:
            with open(portfile) as f:
                port = f.read().strip()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as h:
                if json.load(h).get("ready"):
                    return p
        except (OSError, ValueError):
            pass
        if time.monotonic() > end:
            raise RuntimeError("hived not ready after 60 s")
        time.sleep(0.05)


# ---- figures ------------------------------------------------------------

def slope_kb_min(samples, key, after_s=60):
    """Least squares slope of samples[key] (kB) over t (s), in kB/min, over
    the samples from after_s on (the first minute); None with fewer than 2."""
    pts = [(s["t"] / 60.0, s[key]) for s in samples if s["t"] >= after_s and s[key] is not None]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def machine():
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return [("cores (nproc)", str(os.cpu_count())), ("CPU", cpu),
            ("memory", f"{mem:.1f} GiB"), ("kernel", " ".join(os.uname()[0:3:2])),
            ("Redis", first(["redis-server", "--version"])),
            ("PostgreSQL", first([f"{os.environ.get('SOAK_PG_BIN', '')}/postgres", "--version"])),
            ("build", os.environ.get("SOAK_BUILD", "?")),
            ("source", os.environ.get("SOAK_COMMIT", "?"))]


def main():
    ap = argparse.ArgumentParser(description="Hive soak test (run it through bench/soak)")
    ap.add_argument("--dir", required=True, help="scratch directory (bench/soak makes it)")
    ap.add_argument("-d", type=int, default=1800, metavar="SECONDS",
                    help="how long tasks are submitted (default 1800)")
    ap.add_argument("-r", type=int, default=1000, metavar="RATE",
                    help="tasks per second (default 1000)")
    ap.add_argument("-o", default="bench/SOAK.md", metavar="FILE",
                    help="the report (default bench/SOAK.md)")
    o = ap.parse_args()
    if o.d < 1 or o.r < 1:
        ap.error("-d and -r must be positive")

    def on_signal(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    set_subreaper()

    pgbin = os.environ["SOAK_PG_BIN"]
    admin = os.environ["HIVE_TEST_PG"]
    psql(pgbin, admin, "CREATE DATABASE soak")
    pg = admin.replace("dbname=postgres", "dbname=soak")
    port = int(os.environ["HIVE_TEST_REDIS_PORT"])
    rc = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = open("/proc/loadavg").read().split()[:3]

    hived = start_hived(o, pg)
    log(f"hived {hived.pid} ready; {o.r} tasks/s for {o.d} s, a kill every "
        f"{KILL_MIN_S}-{KILL_MAX_S} s (scratch: {o.dir})")
    n = o.d * o.r
    reply = f"hive:reply:soak-{os.getpid()}"
    queues = [f"{PREFIX}:q:{name}:1" for name, _, _ in AGENTS]
    killable = {name for name, _, killed in AGENTS if killed}
    sub = Submitter(port, n, o.r, queues, reply)
    rd = Reader(port, n, reply)
    samples, kill_log = [], []
    kills = 0
    ok = False
    try:
        rd.start()
        sub.start()
        t0 = time.monotonic()
        next_sample, next_kill = t0, t0 + random.uniform(KILL_MIN_S, KILL_MAX_S)
        while True:
            now = time.monotonic()
            if hived.poll() is not None:
                raise RuntimeError(f"hived exited unasked ({hived.returncode})")
            for th in (sub, rd):
                if th.error:
                    raise RuntimeError(f"client thread: {th.error!r}")
            if now >= next_sample:
                workers = children(hived.pid, "hive-worker")
                rss = {lab: rss_kb(pid) for pid, lab in workers.items()}
                vals = sorted(v for v in rss.values() if v is not None)
                samples.append({
                    "t": round(now - t0), "hived": rss_kb(hived.pid),
                    "w_med": vals[len(vals) // 2] if vals else None,
                    "w_max": vals[-1] if vals else None,
                    "w_total": sum(vals), "n_workers": len(vals),
                    "steady": next((v for lab, v in rss.items()
                                    if lab.startswith("steady/")), None),
                    "redis": int(rc.info("memory")["used_memory"]),
                    "submitted": sub.sent, "completed": rd.completed,
                    "kills": kills})
                s = samples[-1]
                log(f"t={s['t']}s submitted={s['submitted']} completed={s['completed']} "
                    f"kills={kills} hived={s['hived']}kB worker_max={s['w_max']}kB "
                    f"steady={s['steady']}kB redis={s['redis'] // 1024}kB")
                next_sample += SAMPLE_S
                if next_sample > t0 + o.d + 0.5:
                    break
            if now >= next_kill and now < t0 + o.d:
                victims = [(pid, lab) for pid, lab in children(hived.pid, "hive-worker").items()
                           if lab.split("/")[0] in killable]
                if victims:
                    pid, lab = random.choice(victims)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills += 1
                        kill_log.append((round(now - t0), lab))
                        log(f"SIGKILL {lab} (pid {pid})")
                    except ProcessLookupError:
                        pass
                next_kill = now + random.uniform(KILL_MIN_S, KILL_MAX_S)
            reap_orphans(OWN_NAMES)
            time.sleep(min(0.2, max(0.01, min(next_sample, next_kill) - time.monotonic())))
        sub.join()
        if sub.error:
            raise RuntimeError(f"submitter: {sub.error!r}")
        submit_s = sub.t_last - sub.t_first

        # Every task has its result, or the deadline passes.
        d0 = time.monotonic()
        while rd.completed < sub.sent and time.monotonic() - d0 < DRAIN_S:
            if rd.error:
                raise RuntimeError(f"reader: {rd.error!r}")
            reap_orphans(OWN_NAMES)
            time.sleep(0.1)
        drain_s = time.monotonic() - d0
        rd.stop.set()
        rd.join()
        # And PostgreSQL has recorded every one as completed.
        recorded = 0
        p0 = time.monotonic()
        while time.monotonic() - p0 < DRAIN_S:
            recorded = int(psql(pgbin, pg, "SELECT count(*) FROM tasks WHERE state = 'completed'"))
            if recorded >= sub.sent:
                break
            time.sleep(0.5)
        record_s = time.monotonic() - p0
        lost = sub.sent - rd.completed
        if lost:
            missing = [f"soak-{k}" for k in range(sub.sent) if not rd.seen[k]]
            log(f"no result for {lost} tasks, first: {' '.join(missing[:20])}")

        def mb(kb):
            return "-" if kb is None else f"{kb / 1024:.2f}"

        def sl(v):
            return "n/a" if v is None else f"{v:.1f}"
        first, last = samples[0], samples[-1]
        for smp in samples:
            smp["redis_kb"] = smp["redis"] / 1024 if smp["redis"] is not None else None
        redis_slope = slope_kb_min(samples, "redis_kb", REDIS_FLAT_S)
        lines = [
            f"soak.duration: {submit_s:.0f} s (tasks submitted for that long, at "
            f"{o.r} tasks/s; then {drain_s:.1f} s until the last result)",
            f"soak.rate: {sub.sent / submit_s:.0f} tasks/s (achieved; {o.r} asked)",
            f"soak.tasks.submitted: {sub.sent} tasks",
            f"soak.tasks.completed: {rd.completed} tasks (a result in the reply stream; "
            f"{rd.errors} with status error)",
            f"soak.tasks.lost: {lost} tasks (submitted, no result within {DRAIN_S} s)",
            f"soak.tasks.ran_twice: {rd.twice} tasks (a second result: re-run after a "
            f"kill, at least once)",
            f"soak.tasks.recorded: {recorded} tasks (completed in PostgreSQL, "
            f"{record_s:.1f} s after the last result)",
            f"soak.kills: {kills} (SIGKILL of a random echo-a/echo-b worker every "
            f"{KILL_MIN_S}-{KILL_MAX_S} s)",
            f"soak.hived.rss.first: {mb(first['hived'])} MB",
            f"soak.hived.rss.last: {mb(last['hived'])} MB",
            f"soak.hived.rss.max: {mb(max(s['hived'] for s in samples))} MB",
            f"soak.hived.rss.slope: {sl(slope_kb_min(samples, 'hived'))} KB/min "
            f"(least squares over the samples after the first minute)",
            f"soak.worker.rss.first: {mb(first['w_max'])} MB (the largest of the "
            f"{first['n_workers']} workers in a sample)",
            f"soak.worker.rss.last: {mb(last['w_max'])} MB",
            f"soak.worker.rss.max: {mb(max(s['w_max'] or 0 for s in samples))} MB",
            f"soak.worker.rss.slope: {sl(slope_kb_min(samples, 'w_max'))} KB/min "
            f"(largest worker per sample; killed ones start afresh)",
            f"soak.worker_unkilled.rss.first: {mb(first['steady'])} MB (steady/1, "
            f"never killed, the same process all along)",
            f"soak.worker_unkilled.rss.last: {mb(last['steady'])} MB",
            f"soak.worker_unkilled.rss.slope: {sl(slope_kb_min(samples, 'steady'))} KB/min",
            f"soak.redis.used_memory.last: {last['redis'] / 1048576:.2f} MB "
            f"(first {first['redis'] / 1048576:.2f} MB)",
            f"soak.redis.used_memory.slope: "
            f"{sl(redis_slope / 1024 if redis_slope is not None else None)} MB/min "
            f"(after {REDIS_FLAT_S // 60} minutes: hived keeps {RETAIN_MIN} "
            f"minutes of acknowledged entries, trimming every 30 s)",
        ]
        for line in lines:
            print(line, flush=True)
        write_report(o, started, load, lines, samples, kill_log)
        ok = lost == 0 and rd.completed == sub.sent
    finally:
        sub.stop.set()
        rd.stop.set()
        if hived.poll() is None:
            hived.send_signal(signal.SIGTERM)
            try:
                hrc = hived.wait(40)
            except subprocess.TimeoutExpired:
                hived.kill()
                hrc = hived.wait()
            if hrc != 0:
                log(f"hived exited with status {hrc}; see {o.dir}/hived.log")
                ok = False
        reap_orphans(OWN_NAMES)
        rc.close()
    return 0 if ok else 1


def write_report(o, started, load, lines, samples, kill_log):
    md = ["# Soak test\n",
          f"Generated by `{os.environ.get('SOAK_CMD', 'bench/soak')}` on {started}. "
          "Do not edit by hand: run it again. What it does: "
          "[README.md](README.md#soak-test-soak-issue-7) and the top of `soak.py`.\n",
          "## Machine\n", "| | |\n|---|---|"]
    md += [f"| {k} | {v} |" for k, v in machine()]
    md.append(f"| load average at start (1, 5, 15 min) | {' '.join(load)} |")
    md.append(f"| load average at the end | {' '.join(open('/proc/loadavg').read().split()[:3])} |")
    md.append("\nRedis and PostgreSQL are private instances (scripts/lib/services.sh), "
              "on loopback, sharing the cores with hived, its workers and the client.\n")
    md.append("## Figures\n\n```")
    md += lines
    md.append("```\n")
    md.append("## RSS samples\n")
    step = max(1, -(-len(samples) // 60))
    shown = samples[::step]
    if shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    if step > 1:
        md.append(f"Every {step}th sample of {len(samples)} (one every {SAMPLE_S} s), "
                  "and the last.\n")
    md.append("| t (s) | hived MB | workers | worker median MB | worker max MB | "
              "workers total MB | steady/1 MB | Redis MB | submitted | completed | kills |")
    md.append("|" + "---|" * 11)

    def mb(kb):
        return "-" if kb is None else f"{kb / 1024:.2f}"
    for s in shown:
        md.append(f"| {s['t']} | {mb(s['hived'])} | {s['n_workers']} | {mb(s['w_med'])} | "
                  f"{mb(s['w_max'])} | {mb(s['w_total'])} | {mb(s['steady'])} | "
                  f"{s['redis'] / 1048576:.1f} | {s['submitted']} | {s['completed']} | "
                  f"{s['kills']} |")
    if kill_log:
        md.append("\n## Kills\n")
        md.append(", ".join(f"{lab} at {t} s" for t, lab in kill_log) + "\n")
    with open(o.o, "w") as f:
        f.write("\n".join(md) + "\n")
    log(f"wrote {o.o}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Stop:
        log("interrupted")
        sys.exit(130)
    except RuntimeError as e:
        log(f"failed: {e}")
        sys.exit(1)
