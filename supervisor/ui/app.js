/*
 * app.js - hived's dashboard (docs/DASHBOARD.md).  Plain JS, no library.
 *
 * State comes from the API at load (GET /agents, /queues, /stats, /tasks,
 * /dead, /workflows, /usage) and then from GET /events, read with fetch()
 * and a stream parser (not EventSource: it cannot send the Authorization
 * header that http_auth_reads asks for).  Each event updates the rows it
 * is about, at once; a `reset` (or a reconnect past the resume window)
 * loads everything again.  Everything the API says reaches the page as
 * text (textContent), never as markup.
 */
"use strict";

const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "hive.token";
const HISTORY = 900;                    /* samples: 15 min of 1 s ticks */
const WF_LINGER_MS = 10000;             /* an ended workflow in the list */

const st = {
	agents: new Map(),                  /* "name/N" -> row state */
	samples: [],
	lastEventId: null,
	wf: null,                           /* the workflow in the graph */
	output: null,                       /* "name/N" followed */
	outBuf: null,                       /* its events while it loads */
	live: false,
	asking: null,                       /* the token dialog, when open */
	drawing: false,                     /* charts to draw when idle */
	noUsage: false,                     /* GET /usage answered 404 */
};

/* ---- small DOM helpers: text only ---- */

function el(tag, cls, text) {
	const e = document.createElement(tag);
	if (cls)
		e.className = cls;
	if (text !== undefined && text !== null)
		e.textContent = String(text);
	return e;
}

function svg(tag, attrs) {
	const e = document.createElementNS(SVGNS, tag);
	for (const k in attrs)
		e.setAttribute(k, String(attrs[k]));
	return e;
}

function td(text, cls) {
	return el("td", cls, text === null || text === undefined ? "–" : text);
}

function dur(ms) {
	if (ms === null || ms === undefined)
		return "–";
	if (ms < 1000)
		return ms + " ms";
	const s = ms / 1000;
	if (s < 60)
		return s.toFixed(s < 10 ? 1 : 0) + " s";
	if (s < 3600)
		return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s";
	return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
}

function kb(v) {
	if (v === null || v === undefined)
		return "–";
	return v < 10240 ? v + " KiB" : (v / 1024).toFixed(0) + " MiB";
}

function clock(at) {
	if (!at)
		return "–";
	const d = new Date(at);
	return isNaN(d) ? String(at) : d.toLocaleTimeString();
}

function note(panel, text) {
	const p = $(panel).querySelector(".note");
	p.textContent = text || "";
	p.hidden = !text;
}

function showError(text) {
	const e = $("error");
	e.textContent = text || "";
	e.hidden = !text;
}

/* ---- the API ---- */

class ApiError extends Error {
	constructor(status, code, message) {
		super(message);
		this.status = status;
		this.code = code;
	}
}

function token() {
	return sessionStorage.getItem(TOKEN_KEY);
}

/* The token from the dialog (once per tab: kept in sessionStorage);
 * resolves to null when the operator cancels. */
function askToken(why) {
	/* Requests refused at once (the page's first reads) share one
	 * question. */
	if (!st.asking)
		st.asking = askOnce(why).finally(() => { st.asking = null; });
	return st.asking;
}

function askOnce(why) {
	const d = $("token-dialog"), input = $("token-input");
	$("token-why").textContent = why || "";
	$("token-why").hidden = !why;
	input.value = "";
	return new Promise((resolve) => {
		const done = (v) => {
			$("token-ok").onclick = $("token-cancel").onclick = null;
			input.onkeydown = null;
			d.close();
			if (v)
				sessionStorage.setItem(TOKEN_KEY, v);
			resolve(v || null);
		};
		$("token-ok").onclick = () => done(input.value.trim());
		$("token-cancel").onclick = () => done(null);
		input.onkeydown = (ev) => {
			if (ev.key === "Enter")
				done(input.value.trim());
		};
		d.showModal();
		input.focus();
	});
}

function headers(extra) {
	const h = Object.assign({}, extra);
	const t = token();
	if (t)
		h.Authorization = "Bearer " + t;
	return h;
}

/* One request; the body as JSON, or an ApiError with the API's message.
 * A 401/403 asks for the token (again) and tries once more. */
async function api(path, opts, retried) {
	opts = opts || {};
	const r = await fetch(path, {method: opts.method || "GET",
	    headers: headers(), cache: "no-store"});
	let body = null;
	try {
		body = await r.json();
	} catch (e) {
		body = null;
	}
	if (r.ok)
		return body;
	const err = body && body.error ? body.error : {};
	if ((r.status === 401 || r.status === 403) && !retried &&
	    err.code !== undefined) {
		sessionStorage.removeItem(TOKEN_KEY);
		if (await askToken((err.message || "token needed") +
		    ": enter hived's token."))
			return api(path, opts, true);
	}
	throw new ApiError(r.status, err.code || "http",
	    err.message || "HTTP " + r.status);
}

async function action(path) {
	if (!token() && !(await askToken()))
		return null;
	try {
		const r = await api(path, {method: "POST"});
		showError("");
		return r;
	} catch (e) {
		showError(path + ": " + e.message);
		return null;
	}
}

/* ---- agents ---- */

const ACTIONS = ["restart", "sleep", "wake", "drain"];

function agentRow(a) {
	const tr = el("tr");
	tr.dataset.agent = a.agent;
	tr.append(td(a.agent, "name"));
	const s = el("td", "state");
	s.append(el("span", "badge"));
	tr.append(s, td("", "task"), td("", "for"), td("", "num restarts"),
	    td("", "num hb"), td("", "num mem"), td("", "num rss"));
	const acts = el("td", "acts");
	for (const act of ACTIONS) {
		const b = el("button", "act", act);
		b.type = "button";
		b.dataset.action = act;
		b.onclick = async () => {
			b.disabled = true;
			const [name, n] = a.agent.split("/");
			await action("/agents/" + encodeURIComponent(name) + "/" +
			    act + "?instance=" + encodeURIComponent(n));
			b.disabled = false;
		};
		acts.append(b);
	}
	tr.append(acts);
	return tr;
}

function setState(tr, state) {
	const b = tr.querySelector(".badge");
	if (b.textContent !== state) {
		b.textContent = state;
		b.className = "badge s-" + state;
	}
}

function setCell(tr, cls, text) {
	const c = tr.querySelector("." + cls);
	text = text === null || text === undefined ? "–" : String(text);
	if (c.textContent !== text)
		c.textContent = text;
}

function paintAgent(a) {
	let tr = document.querySelector('#agents tr[data-agent="' +
	    CSS.escape(a.agent) + '"]');
	if (!tr) {
		tr = agentRow(a);
		$("agents").tBodies[0].append(tr);
		outputChoices();
	}
	setState(tr, a.state);
	setCell(tr, "task", a.task);
	setCell(tr, "for", a.task ? dur(a.task_ms) : null);
	setCell(tr, "restarts", a.restarts);
	setCell(tr, "hb", a.heartbeat_age_ms === null ? null :
	    dur(a.heartbeat_age_ms));
	setCell(tr, "mem", a.memory_v);
	setCell(tr, "rss", kb(a.rss_kb));
}

async function loadAgents() {
	const r = await api("/agents");
	const seen = new Set();
	for (const a of r.agents) {
		seen.add(a.agent);
		st.agents.set(a.agent, a);
		paintAgent(a);
	}
	for (const tr of [...$("agents").tBodies[0].rows])
		if (!seen.has(tr.dataset.agent)) {
			st.agents.delete(tr.dataset.agent);
			tr.remove();
		}
	outputChoices();
}

function onAgent(e) {
	const key = e.agent + "/" + e.instance;
	const a = Object.assign(st.agents.get(key) ||
	    {agent: key, name: e.agent, instance: e.instance}, {
		state: e.state,
		pid: e.pid === undefined ? null : e.pid,
	});
	if (e.restarts !== undefined)
		a.restarts = e.restarts;
	if (e.state !== "ready" && e.state !== "busy")
		a.task = null;
	st.agents.set(key, a);
	paintAgent(a);
}

/* ---- queues (GET /queues at load, then the metrics tick) ---- */

function paintQueues(rows) {
	const by = new Map();
	for (const q of rows) {
		const c = by.get(q.capability) ||
		    {capability: q.capability, length: 0, lag: 0, oldest: null};
		c.length += q.length || 0;
		c.lag = c.lag === null || q.lag === null ? null : c.lag + q.lag;
		const o = q.oldest_ms !== undefined ? q.oldest_ms : q.oldest_age_ms;
		if (o !== null && o !== undefined)
			c.oldest = Math.max(c.oldest || 0, o);
		by.set(q.capability, c);
	}
	const body = $("queues").tBodies[0];
	const rows2 = [];
	for (const c of by.values()) {
		const tr = el("tr");
		tr.dataset.capability = c.capability;
		tr.append(td(c.capability), td(c.length, "num"),
		    td(c.lag, "num"), td(c.oldest === null ? null : dur(c.oldest),
		    "num"));
		rows2.push(tr);
	}
	body.replaceChildren(...rows2);
}

/* ---- charts: the last 15 minutes of the metrics tick ---- */

function sampleOf(m) {
	return {at: Date.parse(m.at) || Date.now(), submitted: m.submitted || 0,
	    completed: m.completed || 0, failed: m.failed || 0,
	    run50: m.run_ms ? m.run_ms.p50 : null,
	    run99: m.run_ms ? m.run_ms.p99 : null,
	    wait99: m.wait_ms ? m.wait_ms.p99 : null};
}

function line(box, pts, cls, max, t0, span) {
	let d = "", pen = false;
	for (const p of pts) {
		if (p.v === null) {
			pen = false;
			continue;
		}
		const x = ((p.at - t0) / span * 600).toFixed(1);
		const y = (118 - p.v / max * 110).toFixed(1);
		d += (pen ? "L" : "M") + x + " " + y;
		pen = true;
	}
	if (d)
		box.append(svg("path", {d: d, class: "ln " + cls}));
}

function chart(id, series, unit) {
	const box = $(id), now = Date.now(), span = HISTORY * 1000;
	const t0 = now - span;
	let max = 1;
	for (const s of series)
		for (const p of s.pts)
			if (p.v !== null && p.v > max)
				max = p.v;
	const g = [];
	for (const f of [0.5, 1]) {
		g.push(svg("line", {x1: 0, x2: 600, y1: 118 - f * 110,
		    y2: 118 - f * 110, class: "grid"}));
	}
	box.replaceChildren(...g);
	for (const s of series)
		line(box, s.pts, s.cls, max, t0, span);
	const t = svg("text", {x: 4, y: 12, class: "axis"});
	t.textContent = Math.round(max) + " " + unit;
	box.append(t);
}

function drawCharts() {
	const s = st.samples, pick = (f) => s.map((p) => ({at: p.at, v: p[f]}));
	chart("chart-rate", [{pts: pick("submitted"), cls: "c-submitted"},
	    {pts: pick("completed"), cls: "c-completed"},
	    {pts: pick("failed"), cls: "c-failed"}], "/s");
	chart("chart-lat", [{pts: pick("wait99"), cls: "c-wait"},
	    {pts: pick("run50"), cls: "c-p50"},
	    {pts: pick("run99"), cls: "c-p99"}], "ms");
}

async function loadStats() {
	try {
		const r = await api("/stats");
		st.samples = r.samples.map(sampleOf);
	} catch (e) {
		st.samples = [];
	}
	drawCharts();
}

/* The charts are drawn when the page is idle: an event that comes with
 * a tick is shown first. */
function chartsLater() {
	if (st.drawing)
		return;
	st.drawing = true;
	const draw = () => {
		st.drawing = false;
		drawCharts();
	};
	if (window.requestIdleCallback)
		requestIdleCallback(draw, {timeout: 1000});
	else
		setTimeout(draw, 0);
}

function onMetrics(m) {
	st.samples.push(sampleOf(m));
	if (st.samples.length > HISTORY)
		st.samples.splice(0, st.samples.length - HISTORY);
	chartsLater();
	if (m.queues)
		paintQueues(m.queues);
	if (m.agents) {
		const parts = [];
		for (const k in m.agents)
			if (m.agents[k])
				parts.push(m.agents[k] + " " + k);
		$("summary").textContent = parts.join(", ");
	}
}

/* ---- failures and dead letters ---- */

function failedRow(t) {
	const tr = el("tr");
	tr.dataset.task = t.id;
	tr.append(td(t.id, "id"), td(t.capability), td(t.agent),
	    td(t.error, "err"), td(clock(t.finished_at || t.updated_at || t.at)));
	return tr;
}

async function loadFailed() {
	try {
		const r = await api("/tasks?state=failed&limit=20");
		$("failed").tBodies[0].replaceChildren(...r.tasks.map(failedRow));
		note("failed-panel", r.tasks.length ? "" : "None.");
	} catch (e) {
		$("failed").tBodies[0].replaceChildren();
		note("failed-panel", e.message);
	}
}

function deadRow(d) {
	const tr = el("tr");
	tr.dataset.dead = d.dead_id;
	if (d.id)
		tr.dataset.task = d.id;
	tr.append(td(d.id, "id"), td(d.code), td(d.reason, "err"),
	    td(clock(d.at)));
	const c = el("td");
	if (d.retryable !== false) {
		const b = el("button", "act retry", "Retry");
		b.type = "button";
		b.onclick = async () => {
			b.disabled = true;
			const r = await action("/dead/" +
			    encodeURIComponent(d.dead_id) + "/retry");
			if (r) {
				tr.remove();
				if (!$("dead").tBodies[0].rows.length)
					note("dead-panel", "None.");
			} else
				b.disabled = false;
		};
		c.append(b);
	}
	tr.append(c);
	return tr;
}

async function loadDead() {
	try {
		const r = await api("/dead?limit=50");
		$("dead").tBodies[0].replaceChildren(...r.dead.map(deadRow));
		note("dead-panel", r.dead.length ? "" : "None.");
	} catch (e) {
		$("dead").tBodies[0].replaceChildren();
		note("dead-panel", e.message);
	}
}

function onTask(t) {
	if (t.state === "failed") {
		const body = $("failed").tBodies[0];
		body.prepend(failedRow(Object.assign({finished_at: t.at}, t)));
		while (body.rows.length > 20)
			body.lastChild.remove();
		note("failed-panel", "");
	}
	if (st.wf && t.workflow === st.wf.id) {
		const task = st.wf.tasks.find((x) => x.id === t.id);
		if (task) {
			task.state = t.state;
			const n = document.querySelector('#graph g[data-task="' +
			    CSS.escape(t.id) + '"]');
			if (n)
				n.setAttribute("class", "node s-" + t.state);
		}
	}
}

function onDead(d) {
	if (d.action === "retried") {
		const body = $("dead").tBodies[0];
		for (const tr of [...body.rows])
			if (tr.dataset.dead === d.id || tr.dataset.task === d.id)
				tr.remove();
		note("dead-panel", body.rows.length ? "" : "None.");
		return;
	}
	/* The event does not carry all a row shows (its dead_id, at,
	 * retryable): this one panel is read again. */
	loadDead();
}

/* ---- workflows ---- */

function wfRow(w) {
	const tr = el("tr", "pick");
	tr.dataset.wf = w.id;
	const t = w.tasks || {};
	let total = t.total;
	if (total === undefined) {
		total = 0;
		for (const k in t)
			total += t[k];
	}
	tr.append(td(w.id, "id"), td(w.name), td("", "state"),
	    td((t.completed || 0) + "/" + total, "num done"));
	tr.querySelector(".state").append(el("span", "badge s-" + w.state,
	    w.state));
	tr.onclick = () => showWorkflow(w.id);
	return tr;
}

async function loadWorkflows() {
	try {
		const r = await api("/workflows?state=running&limit=50");
		$("workflows").tBodies[0].replaceChildren(...r.workflows.map(wfRow));
		note("workflows-panel", r.workflows.length ? "" : "None running.");
	} catch (e) {
		$("workflows").tBodies[0].replaceChildren();
		note("workflows-panel", e.message);
	}
}

function onWorkflow(w) {
	let tr = document.querySelector('#workflows tr[data-wf="' +
	    CSS.escape(w.id) + '"]');
	if (!tr) {
		if (w.state !== "running")
			return;
		tr = wfRow({id: w.id, name: null, state: w.state, tasks: {}});
		$("workflows").tBodies[0].prepend(tr);
		note("workflows-panel", "");
	}
	const b = tr.querySelector(".badge");
	b.textContent = w.state;
	b.className = "badge s-" + w.state;
	if (w.total !== undefined)
		tr.querySelector(".done").textContent = (w.completed || 0) + "/" +
		    w.total;
	if (st.wf && st.wf.id === w.id && w.state !== "running")
		showWorkflow(w.id);
	/* Out of flight: shown ended for a while, then gone from the list
	 * (its graph stays until another is picked). */
	if (w.state !== "running")
		setTimeout(() => {
			if (tr.isConnected && tr.querySelector(".badge")
			    .textContent !== "running")
				tr.remove();
		}, WF_LINGER_MS);
}

/* Layers: a task with no dependencies is in layer 0, any other one
 * past its deepest dependency; nodes in columns by layer. */
function layout(tasks) {
	const byId = new Map(tasks.map((t) => [t.id, t])), layer = new Map();
	const depth = (t, seen) => {
		if (layer.has(t.id))
			return layer.get(t.id);
		if (seen.has(t.id))
			return 0;                   /* a cycle: cannot be, be safe */
		seen.add(t.id);
		let d = 0;
		for (const p of t.depends_on || [])
			if (byId.has(p))
				d = Math.max(d, depth(byId.get(p), seen) + 1);
		layer.set(t.id, d);
		return d;
	};
	const cols = [];
	for (const t of tasks) {
		const d = depth(t, new Set());
		(cols[d] = cols[d] || []).push(t);
	}
	return cols;
}

function drawGraph(wf) {
	const g = $("graph"), W = 150, H = 34, GX = 40, GY = 12;
	const cols = layout(wf.tasks), pos = new Map();
	let rows = 0;
	cols.forEach((col, i) => {
		col.forEach((t, j) => pos.set(t.id, {x: 8 + i * (W + GX),
		    y: 8 + j * (H + GY)}));
		rows = Math.max(rows, col.length);
	});
	const w = 16 + cols.length * (W + GX) - GX, h = 16 + rows * (H + GY) - GY;
	g.setAttribute("viewBox", "0 0 " + w + " " + h);
	g.setAttribute("width", w);
	g.setAttribute("height", h);
	const m = svg("marker", {id: "arrow", viewBox: "0 0 8 8", refX: 8,
	    refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto"});
	m.append(svg("path", {d: "M0 0L8 4L0 8z", class: "tip"}));
	const defs = svg("defs", {});
	defs.append(m);
	const parts = [defs];
	for (const e of wf.edges || []) {
		const a = pos.get(e.depends_on), b = pos.get(e.task);
		if (!a || !b)
			continue;
		const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
		parts.push(svg("path", {class: "edge", "marker-end": "url(#arrow)",
		    d: "M" + x1 + " " + y1 +
		    "C" + (x1 + GX / 2) + " " + y1 + " " + (x2 - GX / 2) + " " +
		    y2 + " " + x2 + " " + y2}));
	}
	for (const t of wf.tasks) {
		const p = pos.get(t.id), n = svg("g", {class: "node s-" + t.state});
		n.dataset.task = t.id;
		n.append(svg("rect", {x: p.x, y: p.y, width: W, height: H, rx: 4}));
		const a = svg("text", {x: p.x + 8, y: p.y + 14});
		a.textContent = t.id.length > 20 ? t.id.slice(0, 19) + "…" : t.id;
		const b = svg("text", {x: p.x + 8, y: p.y + 27, class: "sub"});
		b.textContent = t.capability + " · " + t.state;
		const tip = svg("title", {});
		tip.textContent = t.id + (t.error ? ": " + t.error : "");
		n.append(a, b, tip);
		parts.push(n);
	}
	g.replaceChildren(...parts);
}

async function showWorkflow(id) {
	for (const tr of $("workflows").tBodies[0].rows)
		tr.classList.toggle("on", tr.dataset.wf === id);
	try {
		const r = await api("/workflows/" + encodeURIComponent(id));
		st.wf = r.workflow;
		$("graph-note").textContent = r.workflow.id + " (" +
		    r.workflow.state + ")";
		drawGraph(r.workflow);
	} catch (e) {
		$("graph-note").textContent = e.message;
	}
}

/* ---- one instance's output ---- */

function outputChoices() {
	const sel = $("output-pick"), have = [...sel.options].map((o) =>
	    o.value);
	const want = [...st.agents.keys()].sort();
	if (have.join("\n") === ["", ...want].join("\n"))
		return;
	sel.replaceChildren(el("option", null, "(pick an instance)"));
	sel.options[0].value = "";
	for (const k of want) {
		const o = el("option", null, k);
		o.value = k;
		sel.append(o);
	}
	sel.value = st.output || "";
}

function outputLine(l) {
	const p = $("output"), d = el("div");
	d.append(el("span", "muted", clock(l.at) + " "));
	if (l.task)
		d.append(el("span", "tag", l.task + " "));
	d.append(document.createTextNode(l.text));
	const stick = p.scrollTop + p.clientHeight >= p.scrollHeight - 4;
	p.append(d);
	while (p.childNodes.length > 1000)
		p.firstChild.remove();
	if (stick)
		p.scrollTop = p.scrollHeight;
}

/* The last lines, then the `output` events of the stream, which runs
 * all along: those that come while the lines are read wait in outBuf,
 * and only those past the answer's last_event_id are shown (none lost,
 * none twice). */
async function follow(key) {
	st.output = key || null;
	st.outBuf = key ? [] : null;
	$("output").replaceChildren();
	note("output-panel", "");
	if (!key)
		return;
	const [name, n] = key.split("/");
	try {
		const r = await api("/agents/" + encodeURIComponent(name) +
		    "/output?instance=" + encodeURIComponent(n) + "&n=200");
		if (st.output !== key)
			return;
		for (const l of r.lines)
			outputLine(l);
		const last = r.last_event_id ? Number(r.last_event_id) : 0;
		for (const b of st.outBuf)
			if (!b.id || Number(b.id) > last)
				outputLine(b.o);
	} catch (e) {
		if (st.output === key)
			note("output-panel", e.message);
	}
	if (st.output === key)
		st.outBuf = null;
}

function onOutput(o, id) {
	if (st.output !== o.agent + "/" + o.instance)
		return;
	if (st.outBuf)
		st.outBuf.push({o: o, id: id});
	else
		outputLine(o);
}

/* ---- usage (GET /usage; the panel is hidden where hived has none) ---- */

async function loadUsage() {
	try {
		const r = await api("/usage?by=agent");
		const rows = r.rows.map((u) => {
			const tr = el("tr");
			tr.append(td(u.key), td(u.tasks, "num"),
			    td(u.input_tokens, "num"), td(u.output_tokens, "num"),
			    td(u.cost === null ? null : Number(u.cost).toFixed(4),
			    "num"));
			return tr;
		});
		$("usage").tBodies[0].replaceChildren(...rows);
		$("usage-panel").hidden = false;
	} catch (e) {
		$("usage-panel").hidden = true;
		if (e.status === 404)
			st.noUsage = true;      /* this hived has none: stop asking */
	}
}

/* ---- the event stream ---- */

/* Above events_task_rate the task events of a second come as one
 * `tasks` count: the failures are read again (at most once a second). */
function onTasks(t) {
	if (t.counts && t.counts.failed > 0)
		loadFailed();
}

const HANDLERS = {
	agent: onAgent, task: onTask, tasks: onTasks, workflow: onWorkflow,
	dead: onDead, metrics: onMetrics, output: onOutput,
	reset: () => loadAll(),
};

function dispatch(ev) {
	if (ev.id)
		st.lastEventId = ev.id;
	const fn = HANDLERS[ev.event];
	if (!fn || ev.data === "")
		return;
	let data;
	try {
		data = JSON.parse(ev.data);
	} catch (e) {
		return;
	}
	fn(data, ev.id);
	if (window.hiveSeen)            /* the browser test's hook */
		window.hiveSeen(ev.event, data);
}

/* text/event-stream (the WHATWG rules that matter here): lines end with
 * \n, \r\n or \r; a blank line ends an event; ':' starts a comment. */
function sseParser(onEvent) {
	let buf = "", ev = {id: null, event: "message", data: []};
	let skipLF = false;             /* a \r ended the last chunk */
	return (chunk) => {
		if (chunk === "")
			return;
		if (skipLF && chunk[0] === "\n")
			chunk = chunk.slice(1);
		skipLF = false;
		buf += chunk;
		let i;
		while ((i = buf.search(/[\r\n]/)) >= 0) {
			const line = buf.slice(0, i);
			let n = 1;
			if (buf[i] === "\r") {
				if (i + 1 === buf.length)
					skipLF = true;  /* \r\n may be cut after \r */
				else if (buf[i + 1] === "\n")
					n = 2;
			}
			buf = buf.slice(i + n);
			if (line === "") {
				if (ev.data.length)
					onEvent({id: ev.id, event: ev.event,
					    data: ev.data.join("\n")});
				ev = {id: null, event: "message", data: []};
				continue;
			}
			if (line[0] === ":")
				continue;
			const c = line.indexOf(":");
			const f = c < 0 ? line : line.slice(0, c);
			let v = c < 0 ? "" : line.slice(c + 1);
			if (v[0] === " ")
				v = v.slice(1);
			if (f === "data")
				ev.data.push(v);
			else if (f === "event")
				ev.event = v;
			else if (f === "id")
				ev.id = v;
		}
	};
}

function setLive(on, text) {
	st.live = on;
	const l = $("live");
	l.textContent = text;
	l.className = "live " + (on ? "on" : "off");
}

async function stream() {
	let wait = 500;
	for (;;) {
		try {
			const h = {Accept: "text/event-stream"};
			if (st.lastEventId)
				h["Last-Event-ID"] = st.lastEventId;
			const r = await fetch("/events", {headers: headers(h),
			    cache: "no-store"});
			if (r.status === 401 || r.status === 403) {
				sessionStorage.removeItem(TOKEN_KEY);
				await askToken("Reads need hived's token.");
				continue;
			}
			if (r.status === 404) {
				setLive(false, "no live updates");
				poll();
				return;
			}
			if (!r.ok || !r.body)
				throw new Error("HTTP " + r.status);
			setLive(true, "live");
			wait = 500;
			const rd = r.body.getReader(), dec = new TextDecoder();
			const feed = sseParser(dispatch);
			for (;;) {
				const {value, done} = await rd.read();
				if (done)
					break;
				feed(dec.decode(value, {stream: true}));
			}
		} catch (e) {
			/* dropped, or hived gone: try again */
		}
		setLive(false, "reconnecting");
		await new Promise((r) => setTimeout(r, wait));
		wait = Math.min(wait * 2, 5000);
	}
}

/* Without GET /events (an older hived): read the lists every 2 s. */
function poll() {
	setInterval(() => {
		loadAgents().catch(() => {});
		api("/queues").then((r) => paintQueues(r.queues), () => {});
	}, 2000);
}

/* ---- start ---- */

async function loadAll() {
	try {
		await loadAgents();
		showError("");
	} catch (e) {
		showError("GET /agents: " + e.message);
	}
	api("/queues").then((r) => paintQueues(r.queues), () => {});
	loadStats();
	loadFailed();
	loadDead();
	loadWorkflows();
	loadUsage();
	if (st.wf)
		showWorkflow(st.wf.id);
	if (st.output)
		follow(st.output);
}

document.addEventListener("DOMContentLoaded", async () => {
	$("token-btn").onclick = () => askToken();
	$("output-pick").onchange = (e) => follow(e.target.value);
	await loadAll();
	stream();
	/* What events do not carry (heartbeat age, the task's time, RSS):
	 * the agents' table is read again every 5 s. */
	setInterval(() => loadAgents().catch(() => {}), 5000);
	/* Usage comes with no event: read again every 10 s. */
	setInterval(() => { if (!st.noUsage) loadUsage(); }, 10000);
	setInterval(() => { if (document.visibilityState === "visible")
		drawCharts(); }, 5000);
});
