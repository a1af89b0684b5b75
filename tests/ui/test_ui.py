#!/usr/bin/python3
"""test_ui.py - the dashboard in a real browser (headless Debian chromium
driven by chromedriver through python3-selenium) against a real hived,
hive-worker, Redis and PostgreSQL:

  - GET / and GET /ui/FILE: each file with its Content-Type, the
    Content-Security-Policy, Cache-Control and an ETag (If-None-Match
    with it: 304); an unknown file a 404; the page served without the token even with http_auth_reads;
  - the page lists every agent instance with its state; with
    http_auth_reads it asks for the token first;
  - a worker SIGKILLed: its row leaves ready (crashed or restarting, as
    GET /agents says) and comes back to ready, without a reload;
  - the page's SSE parser: the same events however the stream is cut;
  - one instance's output: the lines it had, then each new one;
  - a dead letter (its task id markup, shown as text) shows in the list;
    Retry, the token typed into the page's dialog, and it leaves the list
    (and GET /dead);
  - a workflow in flight as a graph (2 nodes, 1 edge, layered), a node
    turning completed as its task completes;
  - hived started again: the page reconnects, gets a reset and reads
    everything again; the usage by agent shown;
  - an action the API refuses (wake on a ready instance): its message;
  - a screenshot kept in the test's log directory (its path printed).

Exits 77 (skip) only when chromium cannot start here, saying why.  Run
by /usr/bin/python3: python3-selenium is Debian's, for Debian's Python.
"""
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hivedproc  # noqa: E402
from hivedproc import TOKEN, Hived  # noqa: E402

T = 30  # seconds: a failure guard, never a wait on time


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: " + what)


def files(h):
    want = {"/": "text/html", "/ui/index.html": "text/html",
            "/ui/app.js": "text/javascript", "/ui/app.css": "text/css"}
    for path, ctype in want.items():
        st, hd, body = h.request("GET", path)
        check(st == 200 and hd["Content-Type"].startswith(ctype) and body,
              "GET %s: 200 %s" % (path, hd["Content-Type"]))
        csp = hd.get("Content-Security-Policy", "")
        check("default-src 'none'" in csp and "script-src 'self'" in csp
              and "connect-src 'self'" in csp and "unsafe" not in csp,
              "GET %s: CSP %s" % (path, csp))
        check(hd.get("Cache-Control") == "no-cache" and
              hd.get("ETag", "").startswith('"'),
              "GET %s: Cache-Control no-cache, ETag %s" % (path, hd["ETag"]))
        st, hd2, body = h.request("GET", path,
                                  headers={"If-None-Match": hd["ETag"]})
        check(st == 304 and not body and hd2["ETag"] == hd["ETag"],
              "GET %s, If-None-Match its ETag: 304" % path)
    st, hd, body = h.request("GET", "/ui/nope.js")
    check(st == 404 and b"not_found" in body, "GET /ui/nope.js: 404")
    st, hd, body = h.request("POST", "/")
    check(st == 405, "POST /: 405")


def auth_reads(drv):
    """With http_auth_reads the files need no token, the API does: the
    page asks for it once, then lists the agents."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    h = Hived("uiauth", '[agent "a"]\ncommand = /usr/bin/python3 %s/tests/'
              'ui/ui_handler.py\ncapabilities = other\n'
              % os.environ["HIVE_SOURCE_DIR"], "http_auth_reads = yes\n",
              postgres=False)
    try:
        h.start()
        st, _, _ = h.request("GET", "/")
        check(st == 200, "http_auth_reads: GET / without a token: 200")
        st, _, _ = h.request("GET", "/ui/app.js")
        check(st == 200, "http_auth_reads: GET /ui/app.js without a token")
        st, _, _ = h.request("GET", "/agents")
        check(st == 401, "http_auth_reads: GET /agents without a token: 401")
        drv.get(h.url + "/")
        WebDriverWait(drv, T).until(lambda d: d.find_element(
            By.ID, "token-dialog").is_displayed())
        check(True, "http_auth_reads: the page asks for the token")
        drv.find_element(By.ID, "token-input").send_keys(TOKEN)
        drv.find_element(By.ID, "token-ok").click()
        WebDriverWait(drv, T).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, '#agents tr[data-agent="a/1"]'))
        check(True, "http_auth_reads: with it, the page lists a/1")
    finally:
        h.cleanup()


def main():
    tmp = tempfile.mkdtemp(prefix="ui-", dir=os.environ.get("HIVE_TEST_TMP")
                           or None)
    logdir = os.path.join(os.environ["HIVE_BUILD_DIR"], "meson-logs", "ui")
    os.makedirs(logdir, exist_ok=True)
    drv = hivedproc.browser(tmp)   # first: skip before anything starts
    flag = os.path.join(tmp, "die")
    agents = ('[agent "d"]\ncommand = /usr/bin/python3 %s/tests/ui/'
              'ui_handler.py\ncapabilities = work\ninstances = 2\n'
              'max_attempts = 1\nrestart_limit = 1000\n'
              'restart_window = 1s\n' % os.environ["HIVE_SOURCE_DIR"])
    h = Hived("ui", agents)
    shot = os.path.join(logdir, "dashboard.png")
    try:
        h.start()
        files(h)
        try:
            page(h, drv, flag)
        finally:              # also (above all) when something failed
            drv.save_screenshot(shot)
            print("screenshot: %s" % shot)
        h.cleanup()
        auth_reads(drv)
    finally:
        try:
            drv.quit()
        finally:
            h.cleanup()
    print("all passed")


def page(h, drv, flag):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def until(fn, what):
        WebDriverWait(drv, T, poll_frequency=0.05).until(lambda d: fn(), what)
        print("ok: " + what)

    def state(label):
        return drv.execute_script(
            "const r = document.querySelector('#agents tr[data-agent=\"' +"
            " arguments[0] + '\"] .badge'); return r ? r.textContent : null;",
            label)

    drv.get(h.url + "/")
    for label in ("d/1", "d/2"):
        until(lambda: state(label) == h.agent(label)["state"],
              "the page lists %s as GET /agents does" % label)

    # Every state d/1's badge takes, in order, from now on (each event
    # changes the DOM, however soon the next one comes).
    drv.execute_script("""
        window.seen = [];
        const b = document.querySelector('#agents tr[data-agent="d/1"] .badge');
        new MutationObserver((ms) => { for (const m of ms)
                for (const n of m.addedNodes) window.seen.push(n.textContent); })
            .observe(b, {childList: true});
    """)
    pid = h.agent("d/1")["pid"]
    os.kill(pid, signal.SIGKILL)
    until(lambda: state("d/1") == "ready" and h.agent("d/1")["pid"] != pid
          and any(s in ("crashed", "restarting")
                  for s in drv.execute_script("return window.seen")),
          "d/1 killed: the page showed %s, then ready again"
          % "crashed/restarting")
    print("states shown: %s" % drv.execute_script("return window.seen"))

    sse_parser(drv)
    output(h, drv, until)
    dead_letter(h, drv, flag, until)
    workflow(h, drv, flag + ".hold", until)

    restart(h, drv, until)

    # An action the API refuses: its error shown.
    drv.find_element(By.CSS_SELECTOR,
                     '#agents tr[data-agent="d/2"] button[data-action="wake"]'
                     ).click()
    until(lambda: drv.find_element(By.ID, "error").is_displayed() and
          "nothing to do" in drv.find_element(By.ID, "error").text,
          "wake on a ready instance: the API's error shown")
    print("error shown: %s" % drv.find_element(By.ID, "error").text)


def restart(h, drv, until):
    """hived stopped and started again: the page reconnects with its last
    event id, which the new run does not know: a reset, and the page
    reads everything again (d/1's restarts start again from 0)."""
    drv.execute_script("window.got = []; window.hiveSeen = "
                       "(t) => window.got.push(t);")
    check(drv.execute_script(
        "return document.querySelector('#agents tr[data-agent=\"d/1\"] "
        ".restarts').textContent") != "0", "d/1 has restarted before")
    h.cleanup()
    h.start()
    until(lambda: "reset" in drv.execute_script("return window.got"),
          "hived started again: the page gets a reset")
    until(lambda: drv.execute_script(
        "return document.querySelector('#agents tr[data-agent=\"d/1\"] "
        ".restarts').textContent") == "0" and drv.execute_script(
        "return document.getElementById('live').textContent") == "live",
        "the page read the agents again, live")
    # (GET /usage, read again with the rest: the two tasks of output())
    until(lambda: drv.execute_script(
        "const p = document.getElementById('usage-panel');"
        "return p.hidden ? null : [...p.querySelectorAll('tbody td')]"
        ".map((t) => t.textContent).join(' ')") in
        ("d 2 2400 68 1.0000", "d/2 2 2400 68 1.0000"),
        "usage by agent: d's two tasks, their tokens and cost")


def sse_parser(drv):
    """The page's stream parser: one event whatever the chunks' cuts and
    line ends; comments and unknown fields skipped."""
    got = drv.execute_script(r"""
        const text = arguments[0], out = [];
        for (const nl of ["\n", "\r\n", "\r"]) {
            const t = text.split("\n").join(nl);
            for (let cut = 0; cut <= t.length; cut++) {
                const evs = [];
                const feed = sseParser((e) => evs.push(e));
                feed(t.slice(0, cut));
                feed(t.slice(cut));
                out.push(JSON.stringify(evs));
            }
        }
        return [...new Set(out)];
    """, ": keepalive\nid: 7\nevent: agent\nretry: 9\ndata: {\"a\":1}\n\n"
         "data:{\"b\":2}\n\n")
    check(got == ['[{"id":"7","event":"agent","data":"{\\"a\\":1}"},'
                  '{"id":null,"event":"message","data":"{\\"b\\":2}"}]'],
          "the page's SSE parser: the same events at every cut, \\n, \\r\\n "
          "or \\r (%s)" % got)


def output(h, drv, until):
    """One instance's output: the lines it had, then each new one, as
    text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def say(text, tid):
        st, r = h.post("/tasks", {"agent": "d/2", "id": tid, "payload": {
            "say": text, "usage": {"input_tokens": 1200,
                                   "output_tokens": 34, "cost": 0.5}}})
        check(st == 201, "POST /tasks to d/2: 201")

    def lines():
        return drv.execute_script(
            "return [...document.querySelectorAll('#output > div')]"
            ".map((d) => d.lastChild.textContent)")

    say("before <i>it</i> was picked", "ui-say-1")
    h.wait(lambda: any(l["text"] == "before <i>it</i> was picked"
                       for l in h.get("/agents/d/output?instance=2")[1]
                       ["lines"]), T, "d/2's line in its output")
    Select(drv.find_element(By.ID, "output-pick")).select_by_value("d/2")
    until(lambda: lines() == ["before <i>it</i> was picked"],
          "the output of d/2: the line it had")
    say("and after", "ui-say-2")
    until(lambda: lines() == ["before <i>it</i> was picked", "and after"],
          "the output of d/2: a new line as it comes")
    check(drv.execute_script(
        "return document.querySelectorAll('#output i').length") == 0,
        "output lines are text, not markup")


def dead_letter(h, drv, flag, until):
    """A dead letter whose task id is markup: shown as text; Retry asks
    for the token, and the dead letter leaves the list."""
    from selenium.webdriver.common.by import By

    tid = "ui<b>dead</b>-1"
    open(flag, "w").close()
    st, r = h.post("/tasks", {"capability": "work", "id": tid,
                              "payload": {"flag": flag}, "max_attempts": 1})
    check(st == 201, "POST /tasks: 201")
    row = '#dead tr[data-task="%s"]' % tid
    until(lambda: drv.find_elements(By.CSS_SELECTOR, row),
          "the page lists the dead letter %s" % tid)
    os.unlink(flag)
    check(drv.execute_script(
        "return document.querySelector(arguments[0] + ' td.id').textContent"
        " + '/' + document.querySelectorAll('#dead tbody b').length", row)
          == tid + "/0", "the task id is text, not markup")
    drv.find_element(By.CSS_SELECTOR, row + " button.retry").click()
    until(lambda: drv.find_element(By.ID, "token-dialog").is_displayed(),
          "Retry asks for the token")
    drv.find_element(By.ID, "token-input").send_keys(TOKEN)
    drv.find_element(By.ID, "token-ok").click()
    until(lambda: not drv.find_elements(By.CSS_SELECTOR, row),
          "retried from the page, the dead letter leaves the list")
    check(not any(d["id"] == tid for d in h.get("/dead")[1]["dead"]),
          "GET /dead no longer lists it")
    check(not drv.find_element(By.ID, "error").is_displayed(),
          "no error shown")
    check(drv.execute_script("return sessionStorage.getItem('hive.token')")
          == TOKEN, "the token is kept for the tab")


def workflow(h, drv, hold, until):
    """A workflow in flight, a -> b, a held: its graph, then b completed."""
    from selenium.webdriver.common.by import By

    open(hold, "w").close()
    st, r = h.post("/workflows", {"id": "ui-wf-1", "name": "uiwf", "tasks": [
        {"id": "ui-wf-a", "capability": "work", "payload": {"hold": hold}},
        {"id": "ui-wf-b", "capability": "work", "depends_on": ["ui-wf-a"]}]})
    check(st == 202, "POST /workflows: 202")
    row = '#workflows tr[data-wf="ui-wf-1"]'
    until(lambda: drv.find_elements(By.CSS_SELECTOR, row),
          "the workflow ui-wf-1 shows in flight")
    drv.find_element(By.CSS_SELECTOR, row).click()
    node = '#graph g[data-task="%s"]'
    until(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#graph g.node"))
          == 2 and len(drv.find_elements(By.CSS_SELECTOR, "#graph .edge"))
          == 1, "its graph: 2 tasks, 1 edge")
    xs = [drv.find_element(By.CSS_SELECTOR, node % t + " rect")
          .get_attribute("x") for t in ("ui-wf-a", "ui-wf-b")]
    check(float(xs[0]) < float(xs[1]), "b is a layer right of a (%s)" % xs)
    os.unlink(hold)
    # (the graph is drawn again as the workflow ends: read it afresh)
    until(lambda: "s-completed" in (drv.execute_script(
        "const n = document.querySelector(arguments[0]);"
        " return n ? n.getAttribute('class') : '';", node % "ui-wf-b")),
        "b completes: its node turns completed")


if __name__ == "__main__":
    main()
