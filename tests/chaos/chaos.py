#!/usr/bin/python3
"""Chaos tests: hived, its workers, Redis and PostgreSQL killed while tasks
flow; afterwards PostgreSQL must show every submitted task completed, none
lost, none recorded as completed twice.  docs/CHAOS.md explains the
scenarios, what is counted and how to read the output.

    chaos.py --build DIR [--long] [--tasks N] [--rate R] [--keep] [SCENARIO...]

Each scenario runs on its own private redis-server and PostgreSQL (started
here, as direct children, with the flags of scripts/lib/services.sh, so that
they can be killed and started again on the same port and data), its own
hive.conf and its own hived.  Everything started is stopped by PID, on
success, failure, Ctrl-C and SIGTERM.  Exit status: 0 all scenarios passed,
1 some failed, 77 skipped (a sanitized build, or no redis/msgpack module).
"""
import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "scripts", "lib"))
from hiveprocs import processes, set_subreaper, reap_orphans  # noqa: E402

try:
    import msgpack
    import redis
except ImportError as e:  # scripts/setup installs python3-redis, python3-msgpack
    print(f"skip: /usr/bin/python3 lacks a module ({e}); run scripts/setup")
    sys.exit(77)

PREFIX = "chaos"
RECOVER_LAG_MAX_S = 40   # recovery: every 30 s, at once after a loss
HOST = "chaos-host"
OWN_NAMES = ("hive-worker", "hive-echo", "chaos-slow-echo")   # what hived starts
CLEANING = False   # set while a scenario stops what it started


class Failure(Exception):
    pass


class Stop(BaseException):
    """SIGTERM/SIGINT: unwind through every finally and stop what we started."""


def log(msg):
    print(f"chaos: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def wait_for(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns a true value, at most timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            raise Failure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- processes ----------------------------------------------------------

def descendants():
    """Every process below this one: {pid: (state, ppid, comm)}."""
    table = processes()
    mine, todo = {}, [os.getpid()]
    children = {}
    for pid, st in table.items():
        children.setdefault(st[1], []).append(pid)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in mine:
                mine[c] = table[c]
                todo.append(c)
    return mine


def stop_proc(p, sig=signal.SIGTERM, timeout=15):
    """Send sig to a Popen child, wait up to timeout, then SIGKILL."""
    if p is None or p.poll() is not None:
        return None if p is None else p.returncode
    try:
        p.send_signal(sig)
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


# ---- services -----------------------------------------------------------

class Redis:
    """A private redis-server, as services_start_redis starts it; with
    aof=True, --appendonly yes --appendfsync always."""

    def __init__(self, top, aof):
        self.dir = os.path.join(top, "redis")
        os.makedirs(self.dir)
        self.port = free_port()
        self.aof = aof
        self.proc = None
        self.starts = 0

    def start(self):
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", self.dir, "--save", "", "--maxmemory-policy", "noeviction",
                "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof \
            else ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.starts += 1
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                        socket_connect_timeout=1)

        def up():
            if self.proc.poll() is not None:
                raise Failure(f"redis-server exited ({self.proc.returncode}); "
                              f"see {self.dir}/redis.log")
            try:
                return c.ping()
            except redis.exceptions.RedisError:   # refused, LOADING
                return False
        wait_for(up, 60, "redis-server to answer PING")
        c.close()

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        stop_proc(self.proc)


class Postgres:
    """A private PostgreSQL, as services_start_pg starts it (as the user
    postgres when we are root); stop() is a fast shutdown (SIGINT to the
    postmaster) and start() brings it back on the same data and port."""

    def __init__(self, top):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) if x.isdigit() else x
                                     for x in p.split("/")[4].split(".")])
        if not bins:
            raise Failure("no PostgreSQL server found (run scripts/setup)")
        self.bin = bins[-1]
        self.dir = os.path.join(top, "pg")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.proc = None
        self.run = []
        os.makedirs(self.dir)
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.run = ["setpriv", "--reuid=postgres", "--regid=postgres",
                        "--init-groups", "--"]
        self.log = os.path.join(top, "postgres.log")

    def conninfo(self, db="hive"):
        return f"host={self.dir} port={self.port} user=hive dbname={db}"

    def init(self):
        r = subprocess.run(self.run + [f"{self.bin}/initdb", "-D", self.data,
                                       "-U", "hive", "--auth=trust", "-E", "UTF8",
                                       "--no-sync"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise Failure(f"initdb failed:\n{r.stdout}")

    def start(self):
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                self.run + [f"{self.bin}/postgres", "-D", self.data,
                            "-p", str(self.port), "-k", self.dir,
                            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                            "-c", "synchronous_commit=off",
                            "-c", "full_page_writes=off",
                            "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise Failure(f"postgres exited ({self.proc.returncode}); see {self.log}")
            return subprocess.run([f"{self.bin}/pg_isready", "-q", "-h", self.dir,
                                   "-p", str(self.port)],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
        wait_for(up, 60, "postgres to accept connections", interval=0.1)

    def stop(self):
        """Fast shutdown: SIGINT to the postmaster, wait for it to exit."""
        return stop_proc(self.proc, signal.SIGINT, timeout=60)

    def psql(self, sql, db="hive", timeout=120):
        """Rows of the last statement, as lists of strings."""
        r = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-A", "-t", "-F", "\t",
                            "-v", "ON_ERROR_STOP=1", self.conninfo(db), "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise Failure(f"psql: {r.stderr.strip()}")
        return [line.split("\t") for line in r.stdout.splitlines() if line]


# ---- hived --------------------------------------------------------------

class Hived:
    def __init__(self, top, build, conf):
        self.exe = os.path.join(build, "supervisor", "hived")
        self.conf = conf
        self.portfile = os.path.join(top, "port")
        self.log = os.path.join(top, "hived.log")
        self.proc = None
        self.http = None
        self.starts = 0
        self.unasked_exits = []

    def start(self):
        if os.path.exists(self.portfile):
            os.unlink(self.portfile)
        with open(self.log, "ab") as logf:
            logf.write(f"---- chaos: starting hived ({self.starts + 1})\n".encode())
            logf.flush()
            self.proc = subprocess.Popen([self.exe, "--config", self.conf,
                                         "--port-file", self.portfile],
                                        stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=logf, start_new_session=True)
        self.starts += 1

        def port():
            self.check()
            try:
                with open(self.portfile) as f:
                    return f.read().strip()
            except OSError:
                return None
        self.http = f"http://127.0.0.1:{wait_for(port, 30, 'hived port file')}"

        def ready():
            self.check()
            try:
                return self.get("/health").get("ready")
            except urllib.error.HTTPError as e:
                # 503 while Redis or PostgreSQL is down: the same body
                try:
                    return json.load(e).get("ready")
                except ValueError:
                    return False
            except (OSError, ValueError):
                return False
        wait_for(ready, 60, "hived ready (GET /health)")

    def check(self):
        """hived must not exit unless we made it."""
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            self.unasked_exits.append(rc)
            self.proc = None
            raise Failure(f"hived exited unasked ({rc}); see {self.log}")

    def get(self, path):
        with urllib.request.urlopen(self.http + path, timeout=5) as f:
            return json.load(f)

    def agents(self):
        return self.get("/agents")["agents"]

    def kill(self):
        self.check()
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        p, self.proc = self.proc, None
        return stop_proc(p, signal.SIGTERM, timeout=40)


# ---- the client ---------------------------------------------------------

class Submitter(threading.Thread):
    """Puts n tasks on the echo queue at a steady rate, in small pipelined
    batches, as an at-least-once client does: a batch that fails (Redis
    restarting) is sent again, same ids, until Redis takes it.  `accepted`
    holds the ids Redis acknowledged, in order.  While `gate` is held by
    someone else nothing is in flight."""

    def __init__(self, port, n, rate, tag, queues, workflows=False):
        super().__init__(daemon=True)
        self.port, self.n, self.rate, self.tag = port, n, rate, tag
        self.queues = queues
        # workflows: tasks go in fours, as one workflow each (a diamond:
        # a, then b and c, then d with both results) on PREFIX:workflows.
        self.workflows = workflows
        if workflows:
            self.n -= self.n % 4
        self.accepted = []
        self.gate = threading.Lock()
        self.stop = threading.Event()
        self.error = None
        self.retries = 0
        self.t_first = self.t_last = None

    def task_id(self, i):
        return f"{self.tag}-{i}"

    def diamond(self, k, ids, now):
        """Workflow wf-<k>: ids[0]; ids[1] and ids[2] after it; ids[3]
        after both.  Capabilities alternate as the queues do."""
        caps = [q.split(":")[2] for q in self.queues]
        deps = [[], [ids[0]], [ids[0]], [ids[1], ids[2]]]
        tasks = [{"id": t, "capability": caps[(k + j) % len(caps)],
                  "payload": {"n": k + j}, "depends_on": d}
                 for j, (t, d) in enumerate(zip(ids, deps))]
        return msgpack.packb({"v": 1, "id": f"{self.tag}-wf-{k}",
                              "created_ms": now, "tasks": tasks})

    def run(self):
        try:
            self._run()
        except BaseException as e:   # reported by the main thread
            self.error = e

    def _run(self):
        r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                        socket_connect_timeout=2)
        t0 = time.monotonic()
        self.t_first = time.time()
        i = 0
        while i < self.n and not self.stop.is_set():
            due = min(self.n, int((time.monotonic() - t0) * self.rate) + 1)
            if due <= i:   # the schedule: task i is due at i / rate; send
                # what is due every 10 ms at most, in one pipeline
                time.sleep(max(0.01, t0 + i / self.rate - time.monotonic()))
                continue
            due = min(due, i + 500)
            if self.workflows:
                due -= due % 4
                if due <= i:
                    time.sleep(0.01)
                    continue
            ids = [self.task_id(k) for k in range(i, due)]
            now = int(time.time() * 1000)
            if self.workflows:
                msgs = [self.diamond(k, ids[k - i:k - i + 4], now)
                        for k in range(i, due, 4)]
                keys = [f"{PREFIX}:workflows"] * len(msgs)
            else:
                msgs = [msgpack.packb({"v": 1, "id": t, "payload": {"n": k},
                                       "created_ms": now})
                        for k, t in zip(range(i, due), ids)]
                keys = [self.queues[k % len(self.queues)] for k in range(i, due)]
            give_up = time.monotonic() + 120
            while True:
                with self.gate:
                    try:
                        p = r.pipeline(transaction=False)
                        for key, m in zip(keys, msgs):
                            p.xadd(key, {"m": m})
                        p.execute()
                        self.accepted.extend(ids)
                        break
                    except (redis.exceptions.ConnectionError,
                            redis.exceptions.TimeoutError,
                            redis.exceptions.BusyLoadingError):
                        self.retries += 1
                if time.monotonic() > give_up:
                    raise Failure("Redis took no task for 120 s")
                if self.stop.wait(0.05):   # pace the retries while Redis is away
                    return
            i = due
        self.t_last = time.time()
        r.close()


# ---- one scenario -------------------------------------------------------

CONF = """\
[hive]
redis = 127.0.0.1:{redis_port}
prefix = {prefix}
host = {host}
postgres = {pg}
http = 127.0.0.1:0
token_file = {top}/token
stop_timeout = 10s
worker = {build}/worker/hive-worker

[agent:echo]
command = {build}/examples/hive-echo
capabilities = echo
instances = {instances}
concurrency = {concurrency}
"""

CONF_SLOW = """
[agent:slow]
command = {build}/tests/chaos/chaos-slow-echo {delay}
capabilities = slow
instances = {instances}
concurrency = {concurrency}
"""

# Both agents: killed over and over, restarted at once, never quarantined.
CONF_AGENT_LIMITS = """\
max_attempts = 20
restart_limit = 1000000
restart_window = 1s
backoff = 10ms
backoff_max = 200ms
"""


class Run:
    """Everything one scenario started, and its figures."""

    def __init__(self, name, opts):
        self.name, self.o = name, opts
        self.top = tempfile.mkdtemp(prefix=f"hive-chaos-{name}.")
        os.chmod(self.top, 0o755)
        self.redis = self.pg = self.hived = self.sub = None
        self.hived_b = None      # host_dies: the second host
        self.failures = []
        self.excluded = set()    # accepted before a Redis loss, not yet durable
        self.chaos_stop = threading.Event()
        self.counts = {}
        self.bursts = 0
        # Tasks alternate between the C echo agent and, with --delay, the
        # slow one; bursts go to the slow one (a backlog that lasts a moment).
        self.queues = [f"{PREFIX}:q:echo:1"]
        if opts.delay:
            self.queues.append(f"{PREFIX}:q:slow:1")

    def say(self, metric, value, unit=""):
        print(f"chaos.{self.name}.{metric}: {value}{(' ' + unit) if unit else ''}",
              flush=True)

    # -- set up -----------------------------------------------------------
    def setup(self, aof=False, workflows=False, hosts=1):
        o = self.o
        self.redis = Redis(self.top, aof)
        self.redis.start()
        self.pg = Postgres(self.top)
        self.pg.init()
        self.pg.start()
        self.pg.psql("CREATE DATABASE hive", db="postgres")
        with open(os.path.join(self.top, "token"), "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        conf = os.path.join(self.top, "hive.conf")
        with open(conf, "w") as f:
            fields = dict(redis_port=self.redis.port, prefix=PREFIX, host=HOST,
                          pg=self.pg.conninfo(), top=self.top, build=o.build,
                          instances=o.instances, concurrency=o.concurrency,
                          delay=o.delay)
            f.write(CONF.format(**fields) + CONF_AGENT_LIMITS)
            if o.delay:
                f.write(CONF_SLOW.format(**fields) + CONF_AGENT_LIMITS)
        self.hived = Hived(self.top, o.build, conf)
        self.hived.start()
        if hosts == 2:
            # A second host of the same installation: its own host name,
            # its own agents (same capabilities), its own log.
            top_b = os.path.join(self.top, "b")
            os.makedirs(top_b)
            conf_b = os.path.join(top_b, "hive.conf")
            with open(conf, encoding="utf-8") as f:
                text = f.read()
            text = text.replace(f"host = {HOST}\n", f"host = {HOST}-b\n")
            text = text.replace("[agent:echo]", "[agent:echo-b]")
            text = text.replace("[agent:slow]", "[agent:slow-b]")
            with open(conf_b, "w", encoding="utf-8") as f:
                f.write(text)
            self.hived_b = Hived(top_b, o.build, conf_b)
            self.hived_b.start()
        self.sub = Submitter(self.redis.port, o.tasks, o.rate, f"{self.name}",
                             self.queues, workflows=workflows)

    def agents(self):
        return self.hived.agents()

    def flow_seconds(self):
        return self.o.tasks / self.o.rate

    # -- the checks -------------------------------------------------------
    def counted(self):
        return [t for t in self.sub.accepted if t not in self.excluded]

    def wait_completed(self):
        want = set(self.counted())
        t0 = time.monotonic()
        deadline = t0 + self.o.deadline
        last_log = t0
        done = 0
        while True:
            rows = self.pg.psql("SELECT count(*) FROM tasks WHERE state = 'completed'")
            done = int(rows[0][0])
            if done >= len(want):
                ids = {r[0] for r in self.pg.psql(
                    "SELECT id FROM tasks WHERE state = 'completed'")}
                if not (want - ids):
                    break
            now = time.monotonic()
            if now >= deadline:
                log(f"{self.name}: deadline: {done} completed of {len(want)}")
                break
            if now - last_log >= 10:
                log(f"{self.name}: {done} of {len(want)} completed in PostgreSQL")
                last_log = now
            time.sleep(0.25)
        return time.monotonic() - t0

    def verify(self, wait_s):
        accepted = self.sub.accepted
        want = self.counted()
        rows = self.pg.psql("SELECT id, state, attempts FROM tasks")
        tasks = {r[0]: (r[1], int(r[2])) for r in rows}
        lost = [t for t in want if tasks.get(t, ("missing",))[0] != "completed"]
        twice = [r[0] for r in self.pg.psql(
            "SELECT task_id FROM task_states WHERE state = 'completed' "
            "GROUP BY 1 HAVING count(*) > 1")]
        retried = [t for t in want if t in tasks and tasks[t][1] > 1]
        max_att = max((tasks[t][1] for t in want if t in tasks), default=0)
        dead = [t for t in want if tasks.get(t, ("",))[0] in ("failed", "dead")]
        ran_twice = self.results_twice()
        self.say("submitted", len(accepted), "tasks")
        if self.name == "redis_nopersist":
            self.say("not_durable", len(self.excluded),
                     "tasks (accepted before a loss, queue entry not yet recorded: "
                     "not counted)")
            self.say("counted", len(want), "tasks")
        self.say("completed", len(want) - len(lost), "tasks")
        self.say("lost", len(lost), "tasks")
        self.say("completed_twice", len(twice), "tasks")
        self.say("retried", len(retried), "tasks")
        self.say("max_attempts", max_att)
        if ran_twice is not None:
            self.say("ran_twice", ran_twice, "tasks (more than one ok result in "
                     f"{PREFIX}:results: delivered again, at least once)")
        if dead:
            self.say("failed_or_dead", len(dead), "tasks")
        if self.name == "redis_nopersist":
            # Put back by recovery: the same message, attempt 1, on a new
            # queue entry; its tasks row holds the new entry, its queued_at
            # the time of the first one.  Lag: old entry to new entry.
            n, lag = self.pg.psql(
                "SELECT count(*), coalesce(round(max(split_part(entry, '-', 1)"
                "::bigint / 1000.0 - extract(epoch FROM queued_at))::numeric, 1), 0) "
                "FROM tasks WHERE attempts = 1 AND split_part(entry, '-', 1)"
                "::bigint > (extract(epoch FROM queued_at) * 1000)::bigint")[0]
            self.say("requeued", n, "tasks (put back by recovery)")
            self.say("requeue_lag_max", lag, "s (lost queue entry to its new one)")
            # Recovery runs at once after a loss and then every 30 s while
            # the recorder is at the head of the streams: a lag past that
            # means it did not run while tasks flowed.
            if float(lag) > RECOVER_LAG_MAX_S:
                self.failures.append(f"a lost task waited {lag} s to be put back "
                                     f"(more than {RECOVER_LAG_MAX_S} s)")
        for k, v in self.counts.items():
            self.say(k, v)
        self.say("client_retries", self.sub.retries, "batches")
        self.say("submit_time", f"{self.sub.t_last - self.sub.t_first:.1f}", "s")
        self.say("drain_time", f"{wait_s:.1f}", "s (end of submission to all completed)")
        if self.sub.workflows:
            self.verify_workflows()
        if lost:
            self.failures.append(f"{len(lost)} tasks lost")
            self.explain(lost, tasks)
        if twice:
            self.failures.append(f"{len(twice)} tasks recorded completed twice")
            log(f"{self.name}: completed twice: {' '.join(twice[:20])}")

    def verify_workflows(self):
        """Every workflow completed, and no task was given out before all
        it depends on had completed."""
        want = len(self.counted()) // 4
        # The coordinator marks a workflow completed after the recorder
        # has recorded its last task: wait for that, 15 s at most.
        def completed():
            return int(self.pg.psql("SELECT count(*) FROM workflows "
                                    "WHERE state = 'completed'")[0][0])
        try:
            wait_for(lambda: completed() >= want, 15, "every workflow completed")
        except Failure:
            pass
        done = completed()
        early = int(self.pg.psql(
            "SELECT count(*) FROM workflow_edges e JOIN tasks t "
            "ON t.id = e.task_id JOIN tasks p ON p.id = e.depends_on "
            "WHERE t.queued_at < p.finished_at")[0][0])
        self.say("workflows", want)
        self.say("workflows_completed", done)
        self.say("released_early", early, "tasks (queued before a task they "
                 "depend on had finished)")
        if done != want:
            self.failures.append(f"{want - done} workflows not completed")
        if early:
            self.failures.append(f"{early} tasks released early")

    def results_twice(self):
        """Tasks with more than one ok result in the results stream (what
        Redis still holds: since the last loss in redis_nopersist)."""
        try:
            c = redis.Redis(host="127.0.0.1", port=self.redis.port, socket_timeout=10)
            seen, twice, start = set(), set(), "-"
            for _ in range(10_000):
                entries = c.xrange(f"{PREFIX}:results", start, "+", count=5000)
                for eid, f in entries:
                    m = msgpack.unpackb(f[b"m"], raw=False)
                    if m.get("status") == "ok":
                        (twice if m["id"] in seen else seen).add(m["id"])
                if len(entries) < 5000:
                    break
                start = "(" + entries[-1][0].decode()
            c.close()
            if twice:
                log(f"{self.name}: ran twice (first 10): {' '.join(sorted(twice)[:10])}")
            return len(twice)
        except (redis.exceptions.RedisError, ValueError, KeyError) as e:
            log(f"{self.name}: reading {PREFIX}:results: {e}")
            return None

    def explain(self, lost, tasks):
        """What PostgreSQL and Redis know of the first lost tasks."""
        log(f"{self.name}: lost (first 20 of {len(lost)}): {' '.join(lost[:20])}")
        for t in lost[:5]:
            log(f"  {t}: tasks row: {tasks.get(t, 'none')}")
            for r in self.pg.psql("SELECT state, attempt, agent, at, detail "
                                  f"FROM task_states WHERE task_id = '{t}' "
                                  "ORDER BY attempt, at, hive_state_rank(state)"):
                log(f"    state {' | '.join(r)}")
            for r in self.pg.psql("SELECT kind, agent, reason FROM events "
                                  f"WHERE task_id = '{t}' ORDER BY id"):
                log(f"    event {' | '.join(r)}")
        try:
            c = redis.Redis(host="127.0.0.1", port=self.redis.port, socket_timeout=5)
            for key in self.queues:
                log(f"  redis {key}: len {c.xlen(key)}, groups "
                    f"{c.xinfo_groups(key)}")
            c.close()
        except redis.exceptions.RedisError as e:
            log(f"  redis: {e}")
        self.keep = True

    def worker_crashes(self):
        """Workers that died of a signal we did not send (not 9)."""
        n = 0
        with open(self.hived.log, errors="replace") as f:
            for line in f:
                if " exited signal=" in line and " exited signal=9" not in line:
                    n += 1
                    log(f"{self.name}: {line.rstrip()}")
                if "AddressSanitizer" in line or "runtime error:" in line:
                    n += 1
        return n

    # -- tear down --------------------------------------------------------
    def cleanup(self):
        global CLEANING
        CLEANING = True
        try:
            return self._cleanup()
        finally:
            CLEANING = False

    def _cleanup(self):
        self.chaos_stop.set()
        if self.sub is not None:
            self.sub.stop.set()
            self.sub.join(10)
        rc = None
        if self.hived_b is not None and self.hived_b.proc is not None:
            self.hived_b.stop()
        if self.hived is not None and self.hived.proc is not None:
            rc = self.hived.stop()
        # Anything hived started that is still there (workers of a killed
        # hived, handlers of a killed worker): ours, found by PID under us.
        for _ in range(50):
            left = {p: s for p, s in descendants().items()
                    if s[2] in OWN_NAMES and s[0] not in ("Z", "X")}
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        reap_orphans(OWN_NAMES)
        if self.pg is not None:
            self.pg.stop()
        if self.redis is not None:
            self.redis.stop()
        return rc


# ---- the scenarios ------------------------------------------------------
# Each runs the chaos in the main thread while the submitter runs, and
# returns when the submission is over.

def sc_kill_workers(run):
    """(a) SIGKILL a random worker every 100-300 ms."""
    kills = 0
    while run.sub.is_alive():
        if run.chaos_stop.wait(random.uniform(0.1, 0.3)):
            break
        run.hived.check()
        live = [a for a in run.agents() if a.get("pid")]
        if not live:
            continue
        a = random.choice(live)
        try:
            os.kill(a["pid"], signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        reap_orphans(OWN_NAMES)
    run.counts["workers_killed"] = kills


def _kill_hived(run, with_workers):
    kills = 0
    every = run.o.hived_every
    while run.sub.is_alive():
        if run.chaos_stop.wait(random.uniform(0.5 * every, 1.5 * every)):
            break
        if not run.sub.is_alive():
            break
        restart_hived(run, with_workers)
        kills += 1
    run.counts["hived_killed"] = kills


def restart_hived(run, with_workers):
    """SIGKILL hived (and, with_workers, every worker and handler it
    showed just before) and start it again."""
    pids = []
    if with_workers:
        for a in run.agents():
            pids += [p for p in (a.get("pid"), a.get("handler_pid")) if p]
    run.hived.kill()
    for p in pids:   # ours: children of the hived we just killed
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap_orphans(OWN_NAMES)
    run.hived.start()


def sc_kill_hived(run):
    """(b) SIGKILL hived (its workers finish their tasks and exit) and start
    it again."""
    _kill_hived(run, False)


def sc_kill_hived_all(run):
    """(b') SIGKILL hived and every worker and handler at once, start again."""
    _kill_hived(run, True)


def sc_host_dies(run):
    """(b'') Two hosts share the work; one dies for good (hived, workers and
    handlers SIGKILLed) while tasks flow.  The other requeues its tasks and
    records what its recorder had read: every task still ends completed in
    PostgreSQL, once."""
    if run.chaos_stop.wait(0.4 * run.flow_seconds()):
        return
    b = run.hived_b
    pids = []
    for a in b.agents():
        pids += [p for p in (a.get("pid"), a.get("handler_pid")) if p]
    b.kill()
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap_orphans(OWN_NAMES)
    run.counts["hosts_killed"] = 1


def burst(run, n):
    """Put n tasks on the queue at once (a backlog the workers need a moment
    for), count them as submitted, and wait until PostgreSQL has recorded
    their queue entries: from then on they must survive the loss of Redis."""
    sub = run.sub
    ids = [f"{sub.tag}-burst{run.bursts}-{k}" for k in range(n)]
    run.bursts += 1
    c = redis.Redis(host="127.0.0.1", port=run.redis.port, socket_timeout=5)
    p = c.pipeline(transaction=False)
    now = int(time.time() * 1000)
    for t in ids:
        p.xadd(run.queues[-1], {"m": msgpack.packb(
            {"v": 1, "id": t, "payload": {"burst": run.bursts}, "created_ms": now})})
    with sub.gate:
        p.execute()
        sub.accepted.extend(ids)
    c.close()
    first = ids[0].replace("'", "")
    last = ids[-1].replace("'", "")

    def recorded():
        return int(run.pg.psql(
            f"SELECT count(*) FROM tasks WHERE id IN ('{first}', '{last}') "
            "AND (message IS NOT NULL OR state = 'completed')")[0][0]) == 2
    # The first and the last: the recorder takes a stream's entries in order.
    wait_for(recorded, 60, "the burst recorded in PostgreSQL", interval=0.02)


def _redis_restarts(run, lose):
    n = 0
    every = run.o.redis_every
    checked = 0   # accepted[:checked] were judged at an earlier loss
    while run.sub.is_alive():
        if run.chaos_stop.wait(random.uniform(0.5 * every, 1.5 * every)):
            break
        if not run.sub.is_alive():
            break
        burst(run, run.o.burst)
        with run.sub.gate:   # no XADD in flight: accepted = what Redis had
            run.redis.kill()
            if lose:
                before = run.sub.accepted[checked:]
                checked = len(run.sub.accepted)
                # After the kill no queue entry can be newly recorded, but
                # what the recorder had read is written as Redis goes
                # (held entries, a batch in flight): read PostgreSQL a
                # moment later.  What commits later still only makes more
                # tasks durable than counted here.
                time.sleep(1.0)
                rows = run.pg.psql("SELECT id, state, message IS NOT NULL FROM tasks")
                durable = {r[0] for r in rows
                           if r[2] == "t" or r[1] in ("completed", "failed", "dead")}
                unfinished = sum(1 for r in rows if r[1] in ("queued", "running"))
                lost_now = [t for t in before if t not in durable]
                run.excluded.update(lost_now)
            run.redis.start()
        n += 1
        if lose:
            log(f"redis_nopersist: Redis lost; {len(before)} tasks accepted since "
                f"the last loss, {len(lost_now)} of them not yet durable; "
                f"{unfinished} unfinished in PostgreSQL")
        run.hived.check()
    run.counts["redis_losses" if lose else "redis_restarts"] = n


def sc_redis_aof(run):
    """(c) SIGKILL redis-server (appendonly yes, appendfsync always) and start
    it again on its AOF, each time right after a burst of tasks: nothing
    Redis acknowledged may be lost."""
    _redis_restarts(run, False)


def sc_redis_nopersist(run):
    """(c') SIGKILL redis-server without persistence and start it empty,
    each time right after a burst of tasks has been recorded (so that
    PostgreSQL holds a backlog of unfinished tasks that only recovery can
    bring back): every stream, group and pending entry is gone.  Counted:
    the tasks whose queue entry PostgreSQL had recorded when Redis was lost
    (their tasks row holds the message, which is what recovery puts back)
    or that had already finished there, and every task accepted after the
    last loss."""
    _redis_restarts(run, True)


def sc_workflows(run):
    """(e) Tasks as workflows (diamonds of four), while workers are
    SIGKILLed every 100-300 ms and hived with all of them now and then."""
    kills = hived_kills = 0
    next_hived = time.monotonic() + run.o.hived_every
    while run.sub.is_alive():
        if run.chaos_stop.wait(random.uniform(0.1, 0.3)):
            break
        run.hived.check()
        if time.monotonic() >= next_hived:
            restart_hived(run, True)
            hived_kills += 1
            next_hived = time.monotonic() + random.uniform(
                0.5 * run.o.hived_every, 1.5 * run.o.hived_every)
            continue
        live = [a for a in run.agents() if a.get("pid")]
        if live:
            try:
                os.kill(random.choice(live)["pid"], signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        reap_orphans(OWN_NAMES)
    run.counts["workers_killed"] = kills
    run.counts["hived_killed"] = hived_kills


def sc_pg_outage(run):
    """(d) PostgreSQL stopped (fast shutdown) for a while, then started again
    on the same data and port, while tasks flow."""
    if run.chaos_stop.wait(run.flow_seconds() / 4):
        return
    t0 = time.monotonic()
    run.pg.stop()
    log(f"pg_outage: postgres stopped for {run.o.pg_outage:g}s")
    if run.chaos_stop.wait(run.o.pg_outage):
        return
    run.pg.start()
    run.counts["pg_down_s"] = f"{time.monotonic() - t0:.1f}"
    run.hived.check()
    while run.sub.is_alive() and not run.chaos_stop.wait(0.2):
        pass


SCENARIOS = {
    "kill_workers": (sc_kill_workers, {}),
    "kill_hived": (sc_kill_hived, {}),
    "kill_hived_all": (sc_kill_hived_all, {}),
    "host_dies": (sc_host_dies, {"hosts": 2}),
    "redis_aof": (sc_redis_aof, {"aof": True}),
    "redis_nopersist": (sc_redis_nopersist, {}),
    "pg_outage": (sc_pg_outage, {}),
    "workflows": (sc_workflows, {"workflows": True}),
    "workflows_pg_outage": (sc_pg_outage, {"workflows": True}),
}


def run_scenario(name, opts):
    fn, setup_args = SCENARIOS[name]
    run = Run(name, opts)
    run.keep = opts.keep
    t0 = time.monotonic()
    log(f"{name}: {opts.tasks} tasks at {opts.rate:g}/s; files in {run.top}")
    try:
        try:
            run.setup(**setup_args)
            run.sub.start()
            fn(run)
            run.sub.join(opts.tasks / opts.rate + 300)
            if run.sub.error is not None:
                raise Failure(f"the client failed: {run.sub.error!r}")
            run.hived.check()
            wait_s = run.wait_completed()
            run.hived.check()
            run.verify(wait_s)
            crashes = run.worker_crashes() + len(run.hived.unasked_exits)
            run.say("crashes", crashes)
            if crashes:
                run.failures.append(f"{crashes} crashes")
        except Failure as e:
            run.failures.append(str(e))
            log(f"{name}: {e}")
        finally:
            rc = run.cleanup()
        if rc not in (None, 0):
            run.failures.append(f"hived exited {rc} on SIGTERM")
    finally:
        if run.failures or run.keep:
            log(f"{name}: files kept in {run.top}")
        else:
            shutil.rmtree(run.top, ignore_errors=True)
    run.say("time", f"{time.monotonic() - t0:.1f}", "s")
    run.say("result", "ok" if not run.failures else "FAIL: " + "; ".join(run.failures))
    return run


def sanitized(build):
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            for o in json.load(f):
                if o["name"] == "b_sanitize":
                    return o["value"] not in ("none", [], "")
    except (OSError, ValueError):
        pass
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="the meson build directory")
    ap.add_argument("--long", action="store_true",
                    help="100,000 tasks per scenario at 1,000/s, PostgreSQL down 30 s")
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--rate", type=float, help="tasks per second")
    ap.add_argument("--pg-outage", type=float, help="seconds PostgreSQL is down")
    ap.add_argument("--deadline", type=float,
                    help="seconds after the submission for every task to complete")
    ap.add_argument("--delay", type=int, default=20, metavar="MS",
                    help="the agent 'slow' (tests/chaos/slow_echo.c) answers each "
                    "task after MS ms, so that kills find tasks in flight; half "
                    "the tasks go to it, half to the C echo handler; 0: no slow "
                    "agent, every task to echo (default %(default)s)")
    ap.add_argument("--instances", type=int, default=2, help="per agent (default %(default)s)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the files of every run")
    ap.add_argument("--seed", type=int)
    ap.add_argument("scenario", nargs="*", help=f"any of {', '.join(SCENARIOS)}")
    o = ap.parse_args()
    o.build = os.path.abspath(o.build)

    if o.long:
        o.tasks = o.tasks or 100_000
        o.rate = o.rate or 1000
        o.pg_outage = o.pg_outage if o.pg_outage is not None else 30
        o.deadline = o.deadline or 600
        o.hived_every, o.redis_every, o.burst = 10, 15, 2000
    else:
        o.tasks = o.tasks or 3000
        o.rate = o.rate or 250
        o.pg_outage = o.pg_outage if o.pg_outage is not None else 5
        o.deadline = o.deadline or 120
        o.hived_every, o.redis_every, o.burst = 3, 4, 500
    for s in o.scenario:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}: one of {', '.join(SCENARIOS)}")
    names = o.scenario or list(SCENARIOS)

    if sanitized(o.build):
        print("skip: the build is sanitized; the chaos test runs in the plain build")
        return 77
    for exe in ("supervisor/hived", "worker/hive-worker", "examples/hive-echo",
                "tests/chaos/chaos-slow-echo"):
        if not os.access(os.path.join(o.build, exe), os.X_OK):
            print(f"chaos: {o.build}/{exe} is missing: build first", file=sys.stderr)
            return 1
    seed = o.seed if o.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    log(f"seed {seed} (--seed {seed} repeats the same chaos timing choices)")

    def on_signal(sig, frame):
        if CLEANING:
            log(f"signal {sig}: finishing the clean-up first")
            return
        raise Stop(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    set_subreaper()

    t0 = time.monotonic()
    runs = []
    try:
        for n in names:
            runs.append(run_scenario(n, o))
    except Stop as e:
        log(f"stopped by {e}")
        return 130
    failed = [r.name for r in runs if r.failures]
    print(f"chaos: {len(runs) - len(failed)} of {len(runs)} scenarios passed in "
          f"{time.monotonic() - t0:.0f}s" + (f"; failed: {' '.join(failed)}" if failed else ""),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
