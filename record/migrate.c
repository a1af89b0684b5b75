/*
 * migrate.c - versioned schema migrations, applied by hived at start.
 *
 * Several hosts may start at once against one database, so the whole
 * sequence runs under a session advisory lock:
 *
 *   pg_advisory_lock(K)
 *   CREATE TABLE IF NOT EXISTS hive_schema
 *   SELECT max(version)              -- what this database has
 *   for each newer migration:  BEGIN; <sql>; INSERT hive_schema; COMMIT
 *   pg_advisory_unlock(K)
 *
 * The second host blocks on the lock (server side: hived's loop does not
 * wait), then finds nothing to do.  A migration is one transaction, so a
 * failure leaves the schema at the previous version.  A database newer
 * than this build is refused: an old hived must not write a newer schema.
 *
 * Migrations are append-only: never edit one that has been released; add
 * the next version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "record.h"

/* "hive" in ASCII: the advisory lock key of migrations. */
#define MIGRATE_LOCK "1751741797"

struct migration {
	int version;
	const char *name;
	const char *sql;
};

static const struct migration migrations[] = {
	{ 1, "the record",
	"CREATE TABLE hosts ("
	"  host text PRIMARY KEY,"
	"  started_at timestamptz NOT NULL DEFAULT now(),"
	"  last_seen timestamptz NOT NULL DEFAULT now());"
	/* One row per agent instance on a host: its current state. */
	"CREATE TABLE agents ("
	"  host text NOT NULL,"
	"  name text NOT NULL,"
	"  instance int NOT NULL,"
	"  state text NOT NULL,"
	"  pid int,"
	"  restarts int NOT NULL DEFAULT 0,"
	"  tasks_done bigint NOT NULL DEFAULT 0,"
	"  last_heartbeat timestamptz,"
	"  updated_at timestamptz NOT NULL DEFAULT now(),"
	"  PRIMARY KEY (host, name, instance));"
	/* One row per task: where it is now.  message is the task as it was
	 * submitted, so it can be put back on its queue after Redis lost it. */
	"CREATE TABLE tasks ("
	"  id text PRIMARY KEY,"
	"  stream text NOT NULL,"
	"  entry text,"
	"  state text NOT NULL CHECK (state IN"
	"    ('queued', 'running', 'completed', 'failed', 'dead')),"
	"  attempts int NOT NULL DEFAULT 0,"
	"  agent text,"
	"  workflow text,"
	"  message bytea,"
	"  result jsonb,"
	"  error text,"
	"  created_at timestamptz NOT NULL DEFAULT now(),"
	"  updated_at timestamptz NOT NULL DEFAULT now(),"
	"  finished_at timestamptz);"
	"CREATE INDEX tasks_unfinished ON tasks (created_at)"
	"  WHERE state IN ('queued', 'running');"
	/* Every state change of every task, in order (of at, then of the
	 * state: hive_state_rank).  A task is in a state once per attempt:
	 * recording the same entry twice (the recorder died between COMMIT
	 * and XACK, or a result came twice) is a no-op.  source is the stream
	 * entry it was read from.  Two indexes only: this table takes three
	 * rows per task. */
	"CREATE TABLE task_states ("
	"  seq bigserial,"
	"  task_id text NOT NULL,"
	"  state text NOT NULL,"
	"  attempt int NOT NULL DEFAULT 0,"
	"  agent text,"
	"  at timestamptz NOT NULL DEFAULT now(),"
	"  detail text,"
	"  source text,"
	"  UNIQUE (task_id, state, attempt));"
	/* A task ends once: a second result (delivery is at least once) is
	 * not a second completion. */
	"CREATE UNIQUE INDEX task_states_final ON task_states (task_id)"
	"  WHERE state IN ('completed', 'failed', 'dead');"
	/* The order of states for the recorder: a final state is never
	 * replaced, then a higher attempt wins, then a later state. */
	"CREATE FUNCTION hive_state_rank(s text) RETURNS int"
	"  LANGUAGE sql IMMUTABLE AS"
	"  'SELECT CASE s WHEN ''queued'' THEN 1 WHEN ''running'' THEN 2 ELSE 3 END';"
	"CREATE FUNCTION hive_wins(os text, oa int, ns text, na int)"
	"  RETURNS boolean LANGUAGE sql IMMUTABLE AS"
	"  'SELECT CASE WHEN hive_state_rank(os) = 3 THEN false"
	"   WHEN hive_state_rank(ns) = 3 THEN true"
	"   WHEN na <> oa THEN na > oa"
	"   ELSE hive_state_rank(ns) >= hive_state_rank(os) END';"
	"CREATE TABLE workflows ("
	"  id text PRIMARY KEY,"
	"  name text,"
	"  state text NOT NULL,"
	"  created_at timestamptz NOT NULL DEFAULT now(),"
	"  finished_at timestamptz);"
	"CREATE TABLE workflow_edges ("
	"  workflow_id text NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,"
	"  task_id text NOT NULL,"
	"  depends_on text NOT NULL,"
	"  PRIMARY KEY (workflow_id, task_id, depends_on));"
	/* Versioned memory of each agent instance ("name/instance"). */
	"CREATE TABLE memory_snapshots ("
	"  agent text NOT NULL,"
	"  version bigint NOT NULL,"
	"  memory jsonb NOT NULL,"
	"  task_id text,"
	"  host text,"
	"  created_at timestamptz NOT NULL DEFAULT now(),"
	"  PRIMARY KEY (agent, version));"
	/* The audit trail. */
	"CREATE TABLE events ("
	"  id bigserial PRIMARY KEY,"
	"  at timestamptz NOT NULL DEFAULT now(),"
	"  kind text NOT NULL,"
	"  host text,"
	"  agent text,"
	"  task_id text,"
	"  pid int,"
	"  reason text,"
	"  source text UNIQUE);"
	"CREATE INDEX events_at ON events (at);"
	},
	/* A row per state per task cost the recorder three index insertions
	 * per task: a task's row now carries the times of its attempt, and
	 * task_attempts those of the attempts a later one superseded.
	 * task_states stays, as a view of both. */
	{ 2, "state times in the task row",
	"ALTER TABLE tasks ADD COLUMN queued_at timestamptz,"
	"  ADD COLUMN started_at timestamptz;"
	"CREATE TABLE task_attempts ("
	"  task_id text NOT NULL,"
	"  attempt int NOT NULL,"
	"  state text NOT NULL,"
	"  agent text,"
	"  queued_at timestamptz,"
	"  started_at timestamptz,"
	"  finished_at timestamptz,"
	"  detail text,"
	"  PRIMARY KEY (task_id, attempt));"
	"UPDATE tasks t SET queued_at = s.at FROM task_states s"
	"  WHERE s.task_id = t.id AND s.attempt = t.attempts AND s.state = 'queued';"
	"UPDATE tasks t SET started_at = s.at FROM task_states s"
	"  WHERE s.task_id = t.id AND s.attempt = t.attempts AND s.state = 'running';"
	"UPDATE tasks t SET finished_at = s.at FROM task_states s"
	"  WHERE s.task_id = t.id AND s.attempt = t.attempts AND s.state = t.state"
	"  AND t.finished_at IS NULL AND hive_state_rank(s.state) = 3;"
	"INSERT INTO task_attempts SELECT s.task_id, s.attempt,"
	"  (array_agg(s.state ORDER BY hive_state_rank(s.state) DESC))[1],"
	"  max(s.agent),"
	"  min(s.at) FILTER (WHERE s.state = 'queued'),"
	"  min(s.at) FILTER (WHERE s.state = 'running'),"
	"  min(s.at) FILTER (WHERE hive_state_rank(s.state) = 3),"
	"  max(s.detail)"
	"  FROM task_states s JOIN tasks t ON t.id = s.task_id"
	"  WHERE s.attempt < t.attempts GROUP BY s.task_id, s.attempt;"
	"DROP TABLE task_states;"
	/* Every state change of every task: (task_id, state, attempt, agent,
	 * at, detail); in order: ORDER BY attempt, at, hive_state_rank(state). */
	"CREATE VIEW task_states AS"
	"  SELECT id AS task_id, 'queued'::text AS state, attempts AS attempt,"
	"    NULL::text AS agent, queued_at AS at, NULL::text AS detail"
	"    FROM tasks WHERE queued_at IS NOT NULL"
	"  UNION ALL SELECT id, 'running', attempts, agent, started_at, NULL"
	"    FROM tasks WHERE started_at IS NOT NULL"
	"  UNION ALL SELECT id, state, attempts, agent, finished_at, error"
	"    FROM tasks WHERE finished_at IS NOT NULL"
	"  UNION ALL SELECT task_id, 'queued', attempt, NULL, queued_at, NULL"
	"    FROM task_attempts WHERE queued_at IS NOT NULL"
	"  UNION ALL SELECT task_id, 'running', attempt, agent, started_at, NULL"
	"    FROM task_attempts WHERE started_at IS NOT NULL"
	"  UNION ALL SELECT task_id, state, attempt, agent, finished_at, detail"
	"    FROM task_attempts WHERE finished_at IS NOT NULL;"
	},
	/* Workflows: a task waits in PostgreSQL ('waiting') until every task
	 * it depends on has completed; hive_wf_submit records a workflow,
	 * hive_wf_release finds what may run now (coord.c). */
	{ 3, "workflows",
	"ALTER TABLE tasks DROP CONSTRAINT tasks_state_check,"
	"  ADD CONSTRAINT tasks_state_check CHECK (state IN"
	"    ('waiting', 'queued', 'running', 'completed', 'failed', 'dead'));"
	"CREATE OR REPLACE FUNCTION hive_state_rank(s text) RETURNS int"
	"  LANGUAGE sql IMMUTABLE AS"
	"  'SELECT CASE s WHEN ''waiting'' THEN 0 WHEN ''queued'' THEN 1"
	"   WHEN ''running'' THEN 2 ELSE 3 END';"
	"ALTER TABLE workflows ADD COLUMN host text;"
	"ALTER TABLE events ADD COLUMN workflow text;"
	"CREATE INDEX tasks_workflow ON tasks (workflow)"
	"  WHERE workflow IS NOT NULL;"
	"CREATE INDEX workflows_running ON workflows (id)"
	"  WHERE state = 'running';"
	"CREATE INDEX workflow_edges_task ON workflow_edges (task_id);"
	"CREATE INDEX workflow_edges_parent ON workflow_edges (depends_on);"
	/* w: {"id", "name", "created_ms", "tasks": [{"id", "stream",
	 * "message" (hex), "deps": [ids]}]}.  Returns 'ok', 'duplicate' (the
	 * workflow is recorded already) or why it cannot be recorded. */
	"CREATE FUNCTION hive_wf_submit(w jsonb, p_host text) RETURNS text"
	"  LANGUAGE plpgsql AS $$"
	"DECLARE dup text; n bigint;"
	"BEGIN"
	"  IF EXISTS (SELECT 1 FROM workflows WHERE id = w->>'id') THEN"
	"    RETURN 'duplicate';"
	"  END IF;"
	"  SELECT t.id INTO dup FROM jsonb_array_elements(w->'tasks') x"
	"    JOIN tasks t ON t.id = x->>'id' LIMIT 1;"
	"  IF dup IS NOT NULL THEN"
	"    RETURN 'task ' || dup || ' exists already';"
	"  END IF;"
	"  INSERT INTO workflows (id, name, state, host, created_at)"
	"    VALUES (w->>'id', w->>'name', 'running', p_host,"
	"      coalesce(to_timestamp(nullif((w->>'created_ms')::bigint, 0)"
	"      / 1000.0), now()))"
	"    ON CONFLICT DO NOTHING;"
	"  IF NOT FOUND THEN"
	"    RETURN 'duplicate';"
	"  END IF;"
	"  INSERT INTO tasks (id, stream, state, attempts, workflow, message,"
	"    created_at, updated_at)"
	"    SELECT x->>'id', x->>'stream', 'waiting', 0, w->>'id',"
	"      decode(x->>'message', 'hex'),"
	"      coalesce(to_timestamp(nullif((w->>'created_ms')::bigint, 0)"
	"      / 1000.0), now()), now()"
	"    FROM jsonb_array_elements(w->'tasks') x;"
	"  INSERT INTO workflow_edges (workflow_id, task_id, depends_on)"
	"    SELECT w->>'id', x->>'id', d"
	"    FROM jsonb_array_elements(w->'tasks') x,"
	"      jsonb_array_elements_text(x->'deps') d;"
	"  RETURN 'ok';"
	"END $$;"
	/*
	 * What may happen now, after the tasks p_done ended, in the
	 * workflows p_wf (just submitted): or, both NULL, a sweep of every
	 * running workflow.  Rows:
	 *   run   a waiting task whose dependencies all completed, now
	 *         'queued': put its message on o_stream with o_parents
	 *   dead  a waiting task one of whose dependencies failed, now
	 *         'dead' (o_reason), and so on down the graph
	 *   end   a workflow whose tasks all ended: o_reason is its state
	 * The sweep also gives again as 'run' the tasks released more than
	 * 10 s ago that never reached a queue (their entry is unknown).
	 */
	"CREATE FUNCTION hive_wf_release(p_done text[], p_wf text[])"
	"  RETURNS TABLE (o_kind text, o_id text, o_workflow text,"
	"    o_stream text, o_message bytea, o_parents jsonb, o_reason text)"
	"  LANGUAGE plpgsql AS $$"
	"DECLARE cand text[]; wfs text[]; died text[]; run text[]; r record;"
	"BEGIN"
	"  IF p_done IS NULL AND p_wf IS NULL THEN"
	"    wfs := ARRAY(SELECT id FROM workflows WHERE state = 'running');"
	"    cand := ARRAY(SELECT id FROM tasks WHERE workflow = ANY(wfs)"
	"      AND state = 'waiting');"
	"    WITH u AS (UPDATE tasks t SET updated_at = now()"
	"      WHERE t.workflow = ANY(wfs) AND t.state = 'queued'"
	"      AND t.entry IS NULL AND t.updated_at < now() - interval '10 s'"
	"      RETURNING t.id) SELECT array_agg(id) INTO run FROM u;"
	"  ELSE"
	"    wfs := ARRAY(SELECT DISTINCT workflow FROM tasks"
	"      WHERE id = ANY(p_done) AND workflow IS NOT NULL)"
	"      || coalesce(p_wf, '{}');"
	"    cand := ARRAY(SELECT task_id FROM workflow_edges"
	"      WHERE depends_on = ANY(p_done))"
	"      || ARRAY(SELECT id FROM tasks WHERE workflow = ANY(p_wf)"
	"      AND state = 'waiting');"
	"  END IF;"
	"  WITH u AS (UPDATE tasks t SET state = 'queued', updated_at = now()"
	"    WHERE t.id = ANY(cand) AND t.state = 'waiting' AND NOT EXISTS"
	"    (SELECT 1 FROM workflow_edges e JOIN tasks p ON p.id = e.depends_on"
	"    WHERE e.task_id = t.id AND p.state <> 'completed')"
	"    RETURNING t.id) SELECT coalesce(run, '{}') ||"
	"    coalesce(array_agg(id), '{}') INTO run FROM u;"
	"  RETURN QUERY SELECT 'run'::text, t.id, t.workflow, t.stream,"
	"    t.message, (SELECT jsonb_object_agg(p.id, p.result)"
	"    FROM workflow_edges e JOIN tasks p ON p.id = e.depends_on"
	"    WHERE e.task_id = t.id), NULL::text FROM tasks t"
	"    WHERE t.id = ANY(run);"
	"  LOOP"
	"    died := '{}';"
	"    FOR r IN UPDATE tasks t SET state = 'dead',"
	"      error = 'dependency ' || x.dep || ' failed',"
	"      finished_at = now(), updated_at = now()"
	"      FROM (SELECT DISTINCT ON (e.task_id) e.task_id, e.depends_on AS dep"
	"      FROM workflow_edges e JOIN tasks p ON p.id = e.depends_on"
	"      WHERE e.task_id = ANY(cand) AND p.state IN ('failed', 'dead')"
	"      ORDER BY e.task_id, e.depends_on) x"
	"      WHERE t.id = x.task_id AND t.state = 'waiting'"
	"      RETURNING t.id, t.workflow, t.stream, t.message, t.error LOOP"
	"      died := died || r.id;"
	"      RETURN QUERY SELECT 'dead'::text, r.id, r.workflow, r.stream,"
	"        r.message, NULL::jsonb, r.error;"
	"    END LOOP;"
	"    EXIT WHEN cardinality(died) = 0;"
	"    cand := ARRAY(SELECT task_id FROM workflow_edges"
	"      WHERE depends_on = ANY(died));"
	"  END LOOP;"
	"  RETURN QUERY WITH f AS (UPDATE workflows w SET"
	"    state = CASE WHEN EXISTS (SELECT 1 FROM tasks t"
	"      WHERE t.workflow = w.id AND t.state <> 'completed')"
	"      THEN 'failed' ELSE 'completed' END, finished_at = now()"
	"    WHERE w.id = ANY(wfs) AND w.state = 'running' AND NOT EXISTS"
	"    (SELECT 1 FROM tasks t WHERE t.workflow = w.id"
	"    AND t.state IN ('waiting', 'queued', 'running'))"
	"    RETURNING w.id, w.state)"
	"    SELECT 'end'::text, NULL::text, f.id, NULL::text, NULL::bytea,"
	"      NULL::jsonb, f.state || ': ' || (SELECT count(*) FILTER"
	"      (WHERE t.state = 'completed') || ' completed, ' ||"
	"      count(*) FILTER (WHERE t.state <> 'completed') || ' failed'"
	"      FROM tasks t WHERE t.workflow = f.id) FROM f;"
	"END $$;"
	},
	/* The recorder's statements (rec_txn.c), as functions, so that no
	 * SQL is made in C: each reads the temporary stage the session
	 * creates and fills by binary COPY, the rows of its kind (plpgsql:
	 * the stage is resolved when called, and each statement is planned
	 * once per session). */
	{ 4, "recorder functions",
	/* The attempts that staged rows supersede keep their states: the
	 * row's own ('t': a later attempt wins over the recorded one), and
	 * the ones the batch itself saw superseded ('a'). */
	"CREATE FUNCTION hive_rec_attempts() RETURNS void"
	"  LANGUAGE plpgsql AS $$"
	"BEGIN"
	"  INSERT INTO task_attempts AS a (task_id, attempt, state, agent,"
	"    queued_at, started_at, finished_at, detail)"
	"    SELECT t.id, t.attempts, t.state, t.agent, t.queued_at,"
	"      t.started_at, t.finished_at, t.error"
	"    FROM hive_rec_stage s JOIN tasks t ON t.id = s.id"
	"    WHERE s.kind = 't' AND s.attempts > 1 AND s.attempts > t.attempts"
	"      AND hive_wins(t.state, t.attempts, s.state, s.attempts)"
	"    UNION ALL SELECT s.id, s.attempts, s.state, s.agent, s.queued_at,"
	"      s.started_at, s.finished_at, s.error"
	"    FROM hive_rec_stage s WHERE s.kind = 'a'"
	"    ON CONFLICT DO NOTHING;"
	"END $$;"
	/*
	 * The staged task rows into tasks, by the rule of hive_wins: the
	 * state and what goes with it when it wins; the times of a later
	 * attempt when it wins (of the same attempt, those not known yet);
	 * the message of the newest queue entry.
	 */
	"CREATE FUNCTION hive_rec_apply() RETURNS void"
	"  LANGUAGE plpgsql AS $$"
	"BEGIN"
	"  INSERT INTO tasks AS t (id, stream, entry, state, attempts, agent,"
	"    workflow, message, result, error, created_at, queued_at,"
	"    started_at, finished_at, updated_at)"
	"  SELECT s.id, coalesce(s.stream, ''), s.entry, s.state, s.attempts,"
	"    s.agent, s.workflow, s.message, s.result, s.error,"
	"    coalesce(s.created_at, now()), s.queued_at, s.started_at,"
	"    s.finished_at, now()"
	"  FROM hive_rec_stage s WHERE s.kind = 't'"
	"  ON CONFLICT (id) DO UPDATE SET"
	"  stream = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.stream ELSE t.stream END,"
	"  entry = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.entry ELSE t.entry END,"
	"  message = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.message ELSE t.message END,"
	"  state = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.state ELSE t.state END,"
	"  agent = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) AND EXCLUDED.agent IS NOT NULL"
	"    THEN EXCLUDED.agent ELSE t.agent END,"
	"  result = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.result ELSE t.result END,"
	"  error = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.error ELSE t.error END,"
	"  finished_at = CASE WHEN hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) THEN EXCLUDED.finished_at"
	"    ELSE t.finished_at END,"
	"  queued_at = CASE WHEN (hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) AND"
	"    EXCLUDED.attempts > t.attempts) THEN EXCLUDED.queued_at"
	"    WHEN EXCLUDED.attempts = t.attempts"
	"    THEN coalesce(t.queued_at, EXCLUDED.queued_at)"
	"    ELSE t.queued_at END,"
	"  started_at = CASE WHEN (hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) AND"
	"    EXCLUDED.attempts > t.attempts) THEN EXCLUDED.started_at"
	"    WHEN EXCLUDED.attempts = t.attempts"
	"    THEN coalesce(EXCLUDED.started_at, t.started_at)"
	"    ELSE t.started_at END,"
	"  attempts = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN greatest(t.attempts, EXCLUDED.attempts)"
	"    ELSE t.attempts END,"
	"  workflow = coalesce(t.workflow, EXCLUDED.workflow),"
	"  created_at = least(t.created_at, EXCLUDED.created_at),"
	"  updated_at = now();"
	"END $$;"
	/* Events, keyed by the stream entry they came from: recorded twice,
	 * once.  A time the entry did not give is the transaction's. */
	"CREATE FUNCTION hive_rec_events() RETURNS void"
	"  LANGUAGE plpgsql AS $$"
	"BEGIN"
	"  INSERT INTO events (at, kind, host, agent, task_id, pid, reason,"
	"    source, workflow)"
	"    SELECT coalesce(created_at, now()), event, host, agent, id, pid,"
	"      reason, source, workflow FROM hive_rec_stage WHERE kind = 'e'"
	"    ON CONFLICT DO NOTHING;"
	"END $$;"
	/* Memory snapshots, and of each agent they name only the newest
	 * p_keep versions kept. */
	"CREATE FUNCTION hive_rec_snapshots(p_keep int) RETURNS void"
	"  LANGUAGE plpgsql AS $$"
	"BEGIN"
	"  INSERT INTO memory_snapshots (agent, version, memory, task_id,"
	"    host, created_at)"
	"    SELECT agent, version, memory, id, host,"
	"      coalesce(created_at, now()) FROM hive_rec_stage WHERE kind = 'm'"
	"    ON CONFLICT DO NOTHING;"
	"  DELETE FROM memory_snapshots m USING (SELECT agent,"
	"    max(version) AS top FROM memory_snapshots WHERE agent IN"
	"    (SELECT agent FROM hive_rec_stage WHERE kind = 'm')"
	"    GROUP BY agent) x"
	"    WHERE m.agent = x.agent AND m.version <= x.top - p_keep;"
	"END $$;"
	},
	/*
	 * The API's lists (supervisor/api_tasks.c): newest first by
	 * (created_at, id), a page a backward index scan from the cursor.
	 * Filters: a state but completed (few rows: a partial index, which
	 * a task recorded completed never enters), completed (most rows:
	 * tasks_created, filtered), an agent's name (name/N filters that
	 * scan), a workflow (tasks_workflow, then a sort of its few).  A
	 * capability has no index of its own: its queues filter
	 * tasks_created, as fast as the capability is common (one task in
	 * 20: 0.5 ms), a capability with none a scan (100 ms).  Measured on
	 * 1,000,000 tasks: a page under 1 ms.  What it costs the recorder:
	 * inserting a task row took 3 us of PostgreSQL without these, 7 us
	 * with them (11 us with a fourth on stream, left out for that).
	 * Built inside the migration's transaction: writes to tasks wait
	 * while they are built (seconds per million rows), once.
	 */
	{ 5, "indexes of the API lists",
	"CREATE INDEX tasks_created ON tasks (created_at, id);"
	"CREATE INDEX tasks_state_created ON tasks (state, created_at, id)"
	"  WHERE state <> 'completed';"
	"CREATE INDEX tasks_agent_created ON tasks"
	"  (split_part(agent, '/', 1), created_at, id) WHERE agent IS NOT NULL;"
	"CREATE INDEX workflows_created ON workflows (created_at, id);"
	},
	/*
	 * A dead letter retried (supervisor/api_dead.c, POST /dead/ID/retry)
	 * is a new attempt of the same task, so 'dead' is no longer the end
	 * of every task.  hive_wins: a later attempt replaces a dead one that
	 * ran (attempts > 0: the recorder moves a retried task on by itself
	 * when it reads its new queue entry; a workflow task that never ran,
	 * dead with its dependency at attempts 0, stays dead whatever its
	 * error result says), and a dead letter or failed result of an
	 * earlier attempt, recorded late, never ends a later one (the
	 * recorder may read the dead letter after the retry's attempt was
	 * recorded).  A completed earlier attempt still ends the task: its
	 * work is done.  rec_entry.c's state_wins is the same rule in C.
	 */
	{ 6, "retried dead letters",
	"CREATE OR REPLACE FUNCTION hive_wins(os text, oa int, ns text, na int)"
	"  RETURNS boolean LANGUAGE sql IMMUTABLE AS"
	"  'SELECT CASE WHEN os = ''dead'' AND oa > 0 AND na > oa THEN true"
	"   WHEN hive_state_rank(os) = 3 THEN false"
	"   WHEN ns IN (''dead'', ''failed'') AND na < oa THEN false"
	"   WHEN hive_state_rank(ns) = 3 THEN true"
	"   WHEN na <> oa THEN na > oa"
	"   ELSE hive_state_rank(ns) >= hive_state_rank(os) END';"
	/*
	 * The retry of task p_id's dead letter, called by hived once the new
	 * attempt p_attempt is on its queue (p_stream, p_entry, p_message as
	 * queued at p_queued_ms): the dead attempt p_dead goes to
	 * task_attempts (with the times the row had of it), the row to
	 * 'queued' at p_attempt, and the dead letter's event (p_source, as
	 * the recorder keys it) is written if the recorder has not yet.
	 * Whatever order it meets the recorder in: a row already at
	 * p_attempt or later is left alone ('later'); one missing is made.
	 */
	"CREATE FUNCTION hive_dead_retry(p_id text, p_dead int, p_attempt int,"
	"  p_stream text, p_entry text, p_message bytea, p_queued_ms bigint,"
	"  p_created_ms bigint, p_dead_ms bigint, p_agent text, p_reason text,"
	"  p_source text) RETURNS text LANGUAGE plpgsql AS $$"
	"DECLARE r tasks%ROWTYPE;"
	"  q timestamptz := to_timestamp(p_queued_ms / 1000.0);"
	"  d timestamptz := to_timestamp(nullif(p_dead_ms, 0) / 1000.0);"
	"BEGIN"
	"  SELECT * INTO r FROM tasks WHERE id = p_id FOR UPDATE;"
	"  IF FOUND AND r.attempts >= p_attempt THEN"
	"    RETURN 'later';"
	"  END IF;"
	"  INSERT INTO task_attempts AS a (task_id, attempt, state, agent,"
	"    queued_at, started_at, finished_at, detail)"
	"    VALUES (p_id, p_dead, 'dead', coalesce(p_agent, r.agent),"
	"      CASE WHEN r.attempts = p_dead THEN r.queued_at END,"
	"      CASE WHEN r.attempts = p_dead THEN r.started_at END,"
	"      coalesce(d, now()), p_reason)"
	"    ON CONFLICT (task_id, attempt) DO UPDATE SET state = 'dead',"
	"      finished_at = EXCLUDED.finished_at, detail = EXCLUDED.detail,"
	"      agent = coalesce(EXCLUDED.agent, a.agent)"
	"    WHERE hive_state_rank(a.state) < 3;"
	"  IF r.id IS NOT NULL AND r.attempts <> p_dead AND r.attempts > 0 THEN"
	"    INSERT INTO task_attempts (task_id, attempt, state, agent,"
	"      queued_at, started_at, finished_at, detail)"
	"      VALUES (r.id, r.attempts, r.state, r.agent, r.queued_at,"
	"        r.started_at, r.finished_at, r.error)"
	"      ON CONFLICT DO NOTHING;"
	"  END IF;"
	"  INSERT INTO tasks AS t (id, stream, entry, state, attempts, message,"
	"    created_at, queued_at, updated_at)"
	"    VALUES (p_id, p_stream, p_entry, 'queued', p_attempt, p_message,"
	"      coalesce(to_timestamp(nullif(p_created_ms, 0) / 1000.0), q), q,"
	"      now())"
	"    ON CONFLICT (id) DO UPDATE SET stream = EXCLUDED.stream,"
	"      entry = EXCLUDED.entry, message = EXCLUDED.message,"
	"      state = 'queued', attempts = p_attempt, agent = NULL,"
	"      result = NULL, error = NULL, queued_at = q, started_at = NULL,"
	"      finished_at = NULL, updated_at = now();"
	"  INSERT INTO events (at, kind, agent, task_id, reason, source)"
	"    VALUES (coalesce(d, now()), 'task.dead', p_agent, p_id, p_reason,"
	"      p_source) ON CONFLICT DO NOTHING;"
	"  RETURN 'ok';"
	"END $$;"
	},
	/*
	 * Usage and trace context (docs/PROTOCOL.md): what a task cost, as
	 * its result said (the winning attempt's, like its result), and the
	 * trace id of its traceparent (the first one recorded: the queue
	 * entry's and the result's are the same).  Nullable columns without
	 * a default: adding them rewrites nothing.  GET /usage sums the
	 * tasks that reported usage, finished since a time: a partial index
	 * on finished_at holds only those, so a task without usage costs
	 * the recorder no index write.  The recorder's upsert
	 * (hive_rec_apply) writes the new columns.
	 */
	{ 7, "usage and trace context",
	"ALTER TABLE tasks ADD COLUMN trace_id text,"
	"  ADD COLUMN input_tokens bigint, ADD COLUMN output_tokens bigint,"
	"  ADD COLUMN cost double precision, ADD COLUMN model text;"
	"CREATE INDEX tasks_usage ON tasks (finished_at) WHERE"
	"  input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR"
	"  cost IS NOT NULL OR model IS NOT NULL;"
	"CREATE OR REPLACE FUNCTION hive_rec_apply() RETURNS void"
	"  LANGUAGE plpgsql AS $$"
	"BEGIN"
	"  INSERT INTO tasks AS t (id, stream, entry, state, attempts, agent,"
	"    workflow, message, result, error, created_at, queued_at,"
	"    started_at, finished_at, updated_at, trace_id, input_tokens,"
	"    output_tokens, cost, model)"
	"  SELECT s.id, coalesce(s.stream, ''), s.entry, s.state, s.attempts,"
	"    s.agent, s.workflow, s.message, s.result, s.error,"
	"    coalesce(s.created_at, now()), s.queued_at, s.started_at,"
	"    s.finished_at, now(), s.trace_id, s.input_tokens, s.output_tokens,"
	"    s.cost, s.model"
	"  FROM hive_rec_stage s WHERE s.kind = 't'"
	"  ON CONFLICT (id) DO UPDATE SET"
	"  stream = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.stream ELSE t.stream END,"
	"  entry = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.entry ELSE t.entry END,"
	"  message = CASE WHEN (EXCLUDED.message IS NOT NULL AND"
	"    (t.message IS NULL OR EXCLUDED.attempts >= t.attempts))"
	"    THEN EXCLUDED.message ELSE t.message END,"
	"  state = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.state ELSE t.state END,"
	"  agent = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) AND EXCLUDED.agent IS NOT NULL"
	"    THEN EXCLUDED.agent ELSE t.agent END,"
	"  result = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.result ELSE t.result END,"
	"  error = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.error ELSE t.error END,"
	"  finished_at = CASE WHEN hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) THEN EXCLUDED.finished_at"
	"    ELSE t.finished_at END,"
	"  queued_at = CASE WHEN (hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) AND"
	"    EXCLUDED.attempts > t.attempts) THEN EXCLUDED.queued_at"
	"    WHEN EXCLUDED.attempts = t.attempts"
	"    THEN coalesce(t.queued_at, EXCLUDED.queued_at)"
	"    ELSE t.queued_at END,"
	"  started_at = CASE WHEN (hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) AND"
	"    EXCLUDED.attempts > t.attempts) THEN EXCLUDED.started_at"
	"    WHEN EXCLUDED.attempts = t.attempts"
	"    THEN coalesce(EXCLUDED.started_at, t.started_at)"
	"    ELSE t.started_at END,"
	"  attempts = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN greatest(t.attempts, EXCLUDED.attempts)"
	"    ELSE t.attempts END,"
	"  input_tokens = CASE WHEN hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) THEN EXCLUDED.input_tokens"
	"    ELSE t.input_tokens END,"
	"  output_tokens = CASE WHEN hive_wins(t.state, t.attempts,"
	"    EXCLUDED.state, EXCLUDED.attempts) THEN EXCLUDED.output_tokens"
	"    ELSE t.output_tokens END,"
	"  cost = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.cost ELSE t.cost END,"
	"  model = CASE WHEN hive_wins(t.state, t.attempts, EXCLUDED.state,"
	"    EXCLUDED.attempts) THEN EXCLUDED.model ELSE t.model END,"
	"  trace_id = coalesce(t.trace_id, EXCLUDED.trace_id),"
	"  workflow = coalesce(t.workflow, EXCLUDED.workflow),"
	"  created_at = least(t.created_at, EXCLUDED.created_at),"
	"  updated_at = now();"
	"END $$;"
	},
	/*
	 * The states of task control (docs/PROTOCOL.md, task states):
	 * scheduled (waiting for its not_before, or for the backoff of its
	 * next attempt: ranked with waiting, below queued, so that the queue
	 * entry of the same attempt wins whatever order the recorder meets
	 * them in), and two final states, cancelled and expired, which
	 * no later state replaces (hive_wins: rank 3).
	 */
	{ 8, "task control states",
	"ALTER TABLE tasks DROP CONSTRAINT tasks_state_check,"
	"  ADD CONSTRAINT tasks_state_check CHECK (state IN"
	"    ('waiting', 'scheduled', 'queued', 'running', 'completed',"
	"     'failed', 'dead', 'cancelled', 'expired'));"
	"CREATE OR REPLACE FUNCTION hive_state_rank(s text) RETURNS int"
	"  LANGUAGE sql IMMUTABLE AS"
	"  'SELECT CASE s WHEN ''waiting'' THEN 0 WHEN ''scheduled'' THEN 0"
	"   WHEN ''queued'' THEN 1 WHEN ''running'' THEN 2 ELSE 3 END';"
	"DROP INDEX tasks_unfinished;"
	"CREATE INDEX tasks_unfinished ON tasks (created_at)"
	"  WHERE state IN ('scheduled', 'queued', 'running');"
	},
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int
sup_schema_version(void)
{
	return migrations[NMIGRATIONS - 1].version;
}

enum mig_step { MIG_LOCK, MIG_TABLE, MIG_VERSION, MIG_APPLY, MIG_ROLLBACK,
	MIG_UNLOCK };

struct mig {
	struct sup_pg *pg;
	enum mig_step step;
	int have;                    /* version the database has */
	int next;                    /* index of the migration being applied */
	int ok;
	int upto;                    /* the newest version to apply */
	sup_migrate_cb *done;
	void *arg;
};

static void mig_cb(struct sup_pg *, PGresult *, const char *, void *);

static int
mig_send(struct mig *m, const char *sql)
{
	if (sup_pg_query(m->pg, sql, 0, NULL, NULL, NULL, mig_cb, m) == 0)
		return 0;
	log_warnx("postgres: migrate: out of memory");
	return -1;
}

/* Apply migration m->next, or unlock when there are no more. */
static void
mig_apply_next(struct mig *m)
{
	const struct migration *mi;
	char *sql;
	size_t len;

	while (m->next < NMIGRATIONS && migrations[m->next].version <= m->have)
		m->next++;
	if (m->next >= NMIGRATIONS || migrations[m->next].version > m->upto) {
		m->step = MIG_UNLOCK;
		mig_send(m, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")");
		return;
	}
	mi = &migrations[m->next];
	len = strlen(mi->sql) + strlen(mi->name) + 160;
	if ((sql = malloc(len)) == NULL) {
		log_warnx("postgres: migrate: out of memory");
		return;
	}
	/* The name is ours, never user input: no quoting needed beyond it
	 * holding no quote, which the table above guarantees. */
	snprintf(sql, len, "BEGIN; %s INSERT INTO hive_schema (version, name) "
	    "VALUES (%d, '%s'); COMMIT;", mi->sql, mi->version, mi->name);
	m->step = MIG_APPLY;
	log_info("postgres: applying schema migration %d (%s)", mi->version,
	    mi->name);
	mig_send(m, sql);
	free(sql);
}

static void
mig_finish(struct mig *m)
{
	sup_migrate_cb *done = m->done;
	void *arg = m->arg;
	int ok = m->ok, have = m->have;

	free(m);
	done(ok, have, arg);
}

static void
mig_restart(struct mig *m)
{
	/* The connection was lost: the session lock is gone with it and an
	 * open transaction was rolled back.  Start over on the next one. */
	m->step = MIG_LOCK;
	m->next = 0;
	mig_send(m, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")");
}

static void
mig_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct mig *m = arg;

	if (res == NULL) {
		if (m->step == MIG_UNLOCK)
			mig_finish(m);   /* the lock went with the connection */
		else
			mig_restart(m);
		return;
	}
	if (err != NULL) {
		log_warnx("postgres: migrate: %s", err);
		m->ok = 0;
		switch (m->step) {
		case MIG_UNLOCK:
			mig_finish(m);
			break;
		case MIG_APPLY:
			/* The failed transaction must end before the unlock. */
			m->step = MIG_ROLLBACK;
			mig_send(m, "ROLLBACK");
			break;
		default:
			m->step = MIG_UNLOCK;
			mig_send(m, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")");
			break;
		}
		return;
	}
	switch (m->step) {
	case MIG_LOCK:
		m->step = MIG_TABLE;
		mig_send(m, "CREATE TABLE IF NOT EXISTS hive_schema ("
		    "version int PRIMARY KEY, name text NOT NULL, "
		    "applied_at timestamptz NOT NULL DEFAULT now())");
		break;
	case MIG_TABLE:
		m->step = MIG_VERSION;
		mig_send(m, "SELECT coalesce(max(version), 0) FROM hive_schema");
		break;
	case MIG_VERSION:
		m->have = atoi(PQgetvalue(res, 0, 0));
		if (m->have > sup_schema_version()) {
			log_warnx("postgres: the database has schema version %d, "
			    "newer than this hived knows (%d): upgrade hived",
			    m->have, sup_schema_version());
			m->ok = 0;
			m->step = MIG_UNLOCK;
			mig_send(m, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")");
			break;
		}
		mig_apply_next(m);
		break;
	case MIG_APPLY:
		m->have = migrations[m->next].version;
		m->next++;
		mig_apply_next(m);
		break;
	case MIG_ROLLBACK:
		m->step = MIG_UNLOCK;
		mig_send(m, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")");
		break;
	case MIG_UNLOCK:
		mig_finish(m);
		break;
	}
}

int
sup_migrate(struct sup_pg *pg, sup_migrate_cb *done, void *arg)
{
	return sup_migrate_upto(pg, sup_schema_version(), done, arg);
}

int
sup_migrate_upto(struct sup_pg *pg, int version, sup_migrate_cb *done,
    void *arg)
{
	struct mig *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return -1;
	m->upto = version;
	m->pg = pg;
	m->done = done;
	m->arg = arg;
	m->ok = 1;
	m->step = MIG_LOCK;
	if (mig_send(m, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")") < 0) {
		free(m);
		return -1;
	}
	return 0;
}
