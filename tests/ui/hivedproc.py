"""hivedproc.py - a real hived for the dashboard's browser test and bench.

The Python twin of tests/supervisor/hived_proc.c: a private directory
with hive.conf and a token, a unique Redis key prefix (the Redis of
scripts/test: HIVE_TEST_REDIS_HOST/PORT), a fresh PostgreSQL database
when HIVE_TEST_PG is set, hived's log (with its workers') read by a
thread into memory, the HTTP API on a free loopback port.  Waiting is on
events (a log line, an HTTP answer); deadlines only guard failures.
cleanup() kills hived and what is left of its workers, by PID.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

TOKEN = "test-token-0123456789"


def env(name, default=None):
    v = os.environ.get(name)
    if not v and default is None:
        sys.exit("%s is not set: run through scripts/test" % name)
    return v or default


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fresh_db(tag):
    """A new database on HIVE_TEST_PG's server; its connection string."""
    base = os.environ.get("HIVE_TEST_PG")
    if not base:
        return None
    name = "t%d_%s" % (os.getpid(), tag)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", base, "-c",
                    "CREATE DATABASE %s" % name], check=True,
                   stdout=subprocess.DEVNULL)
    return "%s dbname=%s" % (base, name)


class Hived:
    def __init__(self, tag, agents, extra="", postgres=True):
        self.build = env("HIVE_BUILD_DIR")
        self.source = env("HIVE_SOURCE_DIR")
        base = os.environ.get("HIVE_TEST_TMP") or None
        self.dir = tempfile.mkdtemp(prefix="hived-ui-%s-" % tag, dir=base)
        self.prefix = "t%d-%s" % (os.getpid(), tag)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(os.path.join(self.dir, "token"), 0o600)
        pg = fresh_db(tag) if postgres else None
        conf = ("[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
                "http = 127.0.0.1:%d\ntoken_file = %s/token\n%s%s\n%s" % (
                    env("HIVE_TEST_REDIS_HOST", "127.0.0.1"),
                    env("HIVE_TEST_REDIS_PORT", "6379"), self.prefix,
                    os.path.join(self.build, "worker/hive-worker"),
                    self.port, self.dir,
                    "postgres = %s\n" % pg if pg else "", extra, agents))
        self.conf = os.path.join(self.dir, "hive.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = ""
        self.cond = threading.Condition()
        self.proc = None

    def start(self):
        e = dict(os.environ, RUNTIME_DIRECTORY=self.dir)
        self.proc = subprocess.Popen(
            [os.path.join(self.build, "supervisor/hived"), "-v", "--config",
             self.conf, "--port-file", os.path.join(self.dir, "port")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e,
            start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_log(r": ready ", timeout=30)
        self.wait(lambda: self.request("GET", "/health")[0] > 0, 30,
                  "hived's HTTP API")

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            with self.cond:
                self.log += raw.decode("utf-8", "replace")
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.log)

    def wait_log(self, pattern, frm=0, timeout=30):
        """The first line after offset frm that matches pattern (a regex)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.log[frm:].splitlines():
                    if rx.search(line):
                        return line
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("no log line matching %r in %ds;"
                                         " log:\n%s" % (pattern, timeout,
                                                        self.log[-4000:]))
                self.cond.wait(left)

    @staticmethod
    def wait(pred, timeout, what):
        end = time.monotonic() + timeout
        while True:
            try:
                if pred():
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for %s" % what)
            time.sleep(0.05)  # a failure guard's poll, not a wait on time

    def request(self, method, path, body=None, token=None, headers=None):
        """(status, headers, body bytes)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def get(self, path):
        st, _, b = self.request("GET", path)
        return st, json.loads(b) if b else None

    def post(self, path, body=None):
        st, _, b = self.request("POST", path, body, token=TOKEN)
        return st, json.loads(b) if b else None

    def agent(self, label):
        st, b = self.get("/agents")
        for a in b["agents"]:
            if a["agent"] == label:
                return a
        raise AssertionError("no agent %s in GET /agents" % label)

    def cleanup(self):
        if self.proc is None:
            return
        pids = []
        try:
            st, b = self.get("/agents")
            pids = [a["pid"] for a in b["agents"] if a.get("pid")]
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


def browser(tmp):
    """Headless Debian chromium through chromedriver; exits 77 (skip)
    when it cannot start here, saying why."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        print("skip: python3-selenium is not installed (%s)" % e)
        sys.exit(77)
    for p in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(p, os.X_OK):
            print("skip: %s is missing (packages chromium, chromium-driver)"
                  % p)
            sys.exit(77)
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--no-first-run",
              "--window-size=1400,1400",
              "--user-data-dir=" + os.path.join(tmp, "chromium")):
        o.add_argument(a)
    try:
        return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                                options=o)
    except Exception as e:
        print("skip: chromium cannot start in this environment: %s" % e)
        sys.exit(77)
