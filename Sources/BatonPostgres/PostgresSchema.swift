import Logging
import PostgresNIO

/// Numbered schema steps, applied once each at start-up. Several nodes starting together
/// serialise on a transaction-scoped advisory lock, so each step runs exactly once.
enum PostgresSchema {
    /// Each migration is a list of single statements (the extended protocol runs one at a time).
    static func migrations(_ t: PostgresTables) -> [(version: Int, statements: [String])] {
        [
            (1, [
                """
                CREATE TABLE \(t.jobs) (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id text NOT NULL UNIQUE,
                    state text NOT NULL,
                    lane text NOT NULL,
                    session_key text,
                    region_affinity text,
                    priority integer NOT NULL,
                    idempotency_key text,
                    spec text NOT NULL,
                    stage_names text[] NOT NULL,
                    stage_index integer NOT NULL DEFAULT 0,
                    stage_count integer NOT NULL,
                    attempts integer NOT NULL DEFAULT 0,
                    fence bigint NOT NULL DEFAULT 0,
                    ever_claimed boolean NOT NULL DEFAULT false,
                    lease_ttl_ms bigint NOT NULL,
                    ttl_ms bigint NOT NULL,
                    enqueued_at bigint NOT NULL,
                    deadline_base bigint NOT NULL,
                    claim_deadline bigint NOT NULL,
                    run_at bigint NOT NULL,
                    updated_at bigint NOT NULL,
                    lease_node text,
                    lease_expires_at bigint,
                    last_node text,
                    last_node_at bigint,
                    retry_count integer NOT NULL DEFAULT 0,
                    cumulative_backoff_ms bigint NOT NULL DEFAULT 0,
                    last_error_class text,
                    last_reason text,
                    last_message text,
                    finished_at bigint
                ) WITH (fillfactor = 80)
                """,
                "CREATE INDEX jobs_ready ON \(t.jobs) (priority DESC, run_at, seq) WHERE state IN ('queued', 'retry_wait')",
                "CREATE INDEX jobs_deadline ON \(t.jobs) (claim_deadline) WHERE state IN ('queued', 'retry_wait')",
                "CREATE INDEX jobs_lease ON \(t.jobs) (lease_expires_at) WHERE state = 'running'",
                "CREATE INDEX jobs_lease_node ON \(t.jobs) (lease_node) WHERE state = 'running'",
                "CREATE INDEX jobs_state ON \(t.jobs) (state, enqueued_at, seq)",
                "CREATE INDEX jobs_lane ON \(t.jobs) (lane, enqueued_at, seq)",
                "CREATE INDEX jobs_enqueued ON \(t.jobs) (enqueued_at, seq)",
                """
                CREATE TABLE \(t.idempotency) (
                    key text PRIMARY KEY,
                    job_id text NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX idempotency_expiry ON \(t.idempotency) (expires_at)",
                """
                CREATE TABLE \(t.attempts) (
                    job_id text NOT NULL,
                    fence bigint NOT NULL,
                    stage_index integer NOT NULL,
                    attempt integer NOT NULL,
                    stage_name text NOT NULL,
                    node_id text NOT NULL,
                    started_at bigint NOT NULL,
                    finished_at bigint,
                    outcome text NOT NULL,
                    error_class text,
                    reason text,
                    message text,
                    exit_code integer,
                    stdout text,
                    stderr text,
                    log_path text,
                    PRIMARY KEY (job_id, fence, stage_index)
                )
                """,
                """
                CREATE TABLE \(t.events) (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    job_id text NOT NULL,
                    at bigint NOT NULL,
                    kind text NOT NULL,
                    node_id text,
                    stage text,
                    attempt integer,
                    fence bigint,
                    detail text
                )
                """,
                "CREATE INDEX events_job ON \(t.events) (job_id, seq)",
            ]),
            (2, [
                "ALTER TABLE \(t.jobs) ADD COLUMN region_fallback_ms bigint",
                """
                CREATE TABLE \(t.nodes) (
                    id text PRIMARY KEY,
                    instance text NOT NULL,
                    host text NOT NULL,
                    pid integer NOT NULL,
                    region text,
                    tags text NOT NULL,
                    capacity integer NOT NULL,
                    version text NOT NULL,
                    config_hash text NOT NULL,
                    heartbeat_interval_ms bigint NOT NULL,
                    dead_after_ms bigint NOT NULL,
                    state text NOT NULL,
                    started_at bigint NOT NULL,
                    last_seen bigint NOT NULL,
                    in_flight integer NOT NULL DEFAULT 0
                )
                """,
            ]),
            (3, [
                // A claim's row work, as a function so that it can carry its own planner
                // settings (PL/pgSQL: its plan is made once per session). A queue table's
                // statistics are always behind (rows change state faster than ANALYZE runs);
                // with them the planner took a claim for a handful of rows and read every
                // queued row through another index, then sorted them: a claim cost O(queue
                // length), 10-30 ms at 10-20k queued jobs. With sorts priced out here the walk
                // follows `jobs_ready` in claim order and stops at the limit, whatever the
                // statistics say. The lock and the update are one query, so they see one
                // snapshot (a job committed in between is either claimed or left unlocked).
                // ROWS tells the caller's plan to expect a batch, not a thousand rows.
                """
                CREATE FUNCTION \(t.schema).claim_batch(p_now bigint, p_region text, p_limit bigint, p_node text)
                RETURNS TABLE (r_seq bigint, r_id text, r_spec text, r_priority integer, r_attempts integer,
                               r_fence bigint, r_stage_index integer, r_run_at bigint, r_lease_expires_at bigint,
                               r_stage_name text, r_region_affinity text, r_previous_node text, r_previous_node_at bigint)
                LANGUAGE plpgsql VOLATILE ROWS 16
                SET enable_sort = off SET jit = off SET plan_cache_mode = force_generic_plan AS $$
                BEGIN
                    RETURN QUERY
                    WITH picked AS (
                        SELECT q.seq, q.last_node, q.last_node_at FROM \(t.jobs) q
                        WHERE q.state IN ('queued', 'retry_wait') AND q.run_at <= p_now AND q.claim_deadline > p_now
                          AND (q.region_affinity IS NULL OR q.region_affinity = p_region
                               OR q.run_at + q.region_fallback_ms <= p_now)
                        ORDER BY q.priority DESC, q.run_at, q.seq
                        LIMIT p_limit
                        FOR UPDATE OF q SKIP LOCKED
                    )
                    UPDATE \(t.jobs) j
                    SET state = 'running', attempts = j.attempts + 1, fence = j.fence + 1, ever_claimed = true,
                        claim_deadline = j.deadline_base + j.ttl_ms, lease_node = p_node,
                        lease_expires_at = p_now + j.lease_ttl_ms, last_node = p_node, last_node_at = p_now,
                        updated_at = p_now
                    FROM picked WHERE j.seq = picked.seq
                    RETURNING j.seq, j.id, j.spec, j.priority, j.attempts, j.fence, j.stage_index, j.run_at,
                              j.lease_expires_at, j.stage_names[j.stage_index + 1], j.region_affinity,
                              picked.last_node, picked.last_node_at;
                END
                $$
                """,
                // Every index on jobs gets an entry on each claim and each completion (a state
                // change is never a HOT update). These three served only listings and the
                // rescue of a dead node's few running jobs (found through jobs_lease instead);
                // dead letters keep a small index of their own for `baton dlq list`.
                "DROP INDEX \(t.schema).jobs_state",
                "DROP INDEX \(t.schema).jobs_lane",
                "DROP INDEX \(t.schema).jobs_lease_node",
                "CREATE INDEX jobs_unsuccessful ON \(t.jobs) (enqueued_at, seq) WHERE state IN ('dead', 'expired', 'cancelled')",
            ]),
            (4, [
                // Chains: the current stage's placement (region in region_affinity, required
                // tags here), stage outputs, handoff timing, and the human gates.
                "ALTER TABLE \(t.jobs) ADD COLUMN node_tags text",
                "ALTER TABLE \(t.jobs) ADD COLUMN outputs text",
                "ALTER TABLE \(t.jobs) ADD COLUMN handoff_at bigint",
                "CREATE INDEX jobs_gated ON \(t.jobs) (idempotency_key, seq) WHERE state = 'gated'",
                "ALTER TABLE \(t.attempts) ADD COLUMN http_status integer",
                "ALTER TABLE \(t.attempts) ADD COLUMN outputs text",
                "ALTER TABLE \(t.attempts) ADD COLUMN handoff_ms bigint",
                """
                CREATE TABLE \(t.deadLetterKeys) (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    key text NOT NULL,
                    job_id text NOT NULL,
                    at bigint NOT NULL
                )
                """,
                "CREATE INDEX dead_letter_keys_key ON \(t.deadLetterKeys) (key, at)",
                """
                CREATE TABLE \(t.gates) (
                    key text PRIMARY KEY,
                    state text NOT NULL,
                    held_since bigint NOT NULL,
                    reason text NOT NULL,
                    dead_jobs text NOT NULL,
                    released_at bigint
                )
                """,
                // claim_batch with the stage's required tags and the handoff time (see
                // migration 3 for why a claim is a function with its own planner settings).
                """
                CREATE FUNCTION \(t.schema).claim_batch_v2(p_now bigint, p_region text, p_limit bigint, p_node text, p_tags text[])
                RETURNS TABLE (r_seq bigint, r_id text, r_spec text, r_priority integer, r_attempts integer,
                               r_fence bigint, r_stage_index integer, r_run_at bigint, r_lease_expires_at bigint,
                               r_stage_name text, r_region_affinity text, r_previous_node text, r_previous_node_at bigint,
                               r_outputs text, r_handoff_at bigint)
                LANGUAGE plpgsql VOLATILE ROWS 16
                SET enable_sort = off SET jit = off SET plan_cache_mode = force_generic_plan AS $$
                BEGIN
                    RETURN QUERY
                    WITH picked AS (
                        SELECT q.seq, q.last_node, q.last_node_at, q.handoff_at FROM \(t.jobs) q
                        WHERE q.state IN ('queued', 'retry_wait') AND q.run_at <= p_now AND q.claim_deadline > p_now
                          AND (q.region_affinity IS NULL OR q.region_affinity = p_region
                               OR q.run_at + q.region_fallback_ms <= p_now)
                          AND (q.node_tags IS NULL OR string_to_array(q.node_tags, ',') <@ p_tags)
                        ORDER BY q.priority DESC, q.run_at, q.seq
                        LIMIT p_limit
                        FOR UPDATE OF q SKIP LOCKED
                    )
                    UPDATE \(t.jobs) j
                    SET state = 'running', attempts = j.attempts + 1, fence = j.fence + 1, ever_claimed = true,
                        claim_deadline = j.deadline_base + j.ttl_ms, lease_node = p_node,
                        lease_expires_at = p_now + j.lease_ttl_ms, last_node = p_node, last_node_at = p_now,
                        handoff_at = NULL, updated_at = p_now
                    FROM picked WHERE j.seq = picked.seq
                    RETURNING j.seq, j.id, j.spec, j.priority, j.attempts, j.fence, j.stage_index, j.run_at,
                              j.lease_expires_at, j.stage_names[j.stage_index + 1], j.region_affinity,
                              picked.last_node, picked.last_node_at, j.outputs, picked.handoff_at;
                END
                $$
                """,
            ]),
            (5, [
                // Lanes with cluster-wide caps, sessions (one running job per key, FIFO),
                // priority ageing and the queue wait of every start.
                """
                CREATE TABLE \(t.lanes) (
                    name text PRIMARY KEY,
                    cap integer,
                    updated_at bigint NOT NULL
                )
                """,
                "ALTER TABLE \(t.jobs) ADD COLUMN base_priority integer",
                "UPDATE \(t.jobs) SET base_priority = priority WHERE state IN ('queued', 'retry_wait', 'running', 'gated')",
                """
                CREATE INDEX jobs_session ON \(t.jobs) (session_key, seq)
                WHERE session_key IS NOT NULL AND state IN ('queued', 'retry_wait', 'running')
                """,
                "ALTER TABLE \(t.attempts) ADD COLUMN lane text",
                "ALTER TABLE \(t.attempts) ADD COLUMN wait_ms bigint",
                "CREATE INDEX attempts_waits ON \(t.attempts) (lane, started_at) WHERE wait_ms IS NOT NULL",
                """
                CREATE TABLE \(t.schema).inbound_seen (
                    key text PRIMARY KEY,
                    job_id text NOT NULL,
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX inbound_seen_expiry ON \(t.schema).inbound_seen (expires_at)",
                """
                CREATE TABLE \(t.schema).inbound_batches (
                    session_key text PRIMARY KEY,
                    job_id text NOT NULL
                )
                """,
                // claim_batch_v2 plus lane caps and sessions. Candidates are locked in claim
                // order (skipping full lanes and sessions that are busy or have an older job
                // waiting); then the capped lanes among them are locked in name order
                // (advisory locks, held to commit) and counted again, so two nodes can never
                // both take a lane's last slot; each lane keeps at most its free slots.
                // Statements of a volatile function each see a fresh snapshot: the count after
                // the lock sees every claim committed before it.
                """
                CREATE FUNCTION \(t.schema).claim_batch_v3(p_now bigint, p_region text, p_limit bigint, p_node text,
                                                          p_tags text[], p_retry_holds boolean)
                RETURNS TABLE (r_seq bigint, r_id text, r_spec text, r_priority integer, r_attempts integer,
                               r_fence bigint, r_stage_index integer, r_run_at bigint, r_lease_expires_at bigint,
                               r_stage_name text, r_region_affinity text, r_previous_node text, r_previous_node_at bigint,
                               r_outputs text, r_handoff_at bigint, r_lane text)
                LANGUAGE plpgsql VOLATILE ROWS 16
                SET enable_sort = off SET jit = off SET plan_cache_mode = force_generic_plan AS $$
                DECLARE
                    v_cap_names text[];
                    v_caps bigint[];
                    v_full text[];
                    v_seqs bigint[];
                    v_lanes text[];
                    v_locked text[] := '{}';
                    v_skip text[] := '{}';
                    v_keep bigint[];
                    v_lane text;
                    v_taken bigint := 0;
                    v_got bigint;
                    v_round integer := 0;
                BEGIN
                    -- The caps are read once, so the locks and the counts below agree on them.
                    SELECT coalesce(array_agg(l.name ORDER BY l.name), '{}'), coalesce(array_agg(l.cap ORDER BY l.name), '{}')
                    INTO v_cap_names, v_caps FROM \(t.lanes) l WHERE l.cap IS NOT NULL;
                    -- A lane that fills up part-way leaves room: look again without it (a few
                    -- rounds at most), so a full lane never hides the jobs of other lanes.
                    LOOP
                        v_round := v_round + 1;
                        SELECT coalesce(array_agg(c.name), '{}') INTO v_full
                        FROM unnest(v_cap_names, v_caps) AS c(name, cap)
                        WHERE c.cap <= (SELECT count(*) FROM \(t.jobs) r WHERE r.state = 'running' AND r.lane = c.name);
                        v_full := v_full || v_skip;
                        SELECT coalesce(array_agg(c.seq), '{}'), coalesce(array_agg(c.lane), '{}') INTO v_seqs, v_lanes FROM (
                            SELECT q.seq, q.lane FROM \(t.jobs) q
                            WHERE q.state IN ('queued', 'retry_wait') AND q.run_at <= p_now AND q.claim_deadline > p_now
                              AND (q.region_affinity IS NULL OR q.region_affinity = p_region
                                   OR q.run_at + q.region_fallback_ms <= p_now)
                              AND (q.node_tags IS NULL OR string_to_array(q.node_tags, ',') <@ p_tags)
                              AND NOT (q.lane = ANY(v_full))
                              -- A session runs its oldest ready job, one at a time.
                              AND (q.session_key IS NULL OR NOT EXISTS (
                                  SELECT 1 FROM \(t.jobs) o
                                  WHERE o.session_key = q.session_key AND o.state IN ('queued', 'retry_wait', 'running')
                                    AND (o.state = 'running'
                                         OR (o.seq < q.seq AND (o.state = 'queued' OR p_retry_holds OR o.run_at <= p_now)))))
                            ORDER BY q.priority DESC, q.run_at, q.seq
                            LIMIT p_limit - v_taken
                            FOR UPDATE OF q SKIP LOCKED
                        ) c;
                        EXIT WHEN cardinality(v_seqs) = 0;
                        -- Lock the capped lanes among the candidates, so two nodes never both take
                        -- a lane's last slot: in name order in the first round; later rounds only
                        -- try (waiting there could deadlock with a node in its first round) and
                        -- leave a lane they cannot lock for the next claim.
                        FOR v_lane IN SELECT c.name FROM unnest(v_cap_names) AS c(name)
                                      WHERE c.name = ANY(v_lanes) AND NOT (c.name = ANY(v_locked)) ORDER BY c.name LOOP
                            IF v_round = 1 THEN
                                PERFORM pg_advisory_xact_lock(hashtext('baton.lane.' || current_schema() || '.' || v_lane));
                                v_locked := v_locked || v_lane;
                            ELSIF pg_try_advisory_xact_lock(hashtext('baton.lane.' || current_schema() || '.' || v_lane)) THEN
                                v_locked := v_locked || v_lane;
                            ELSE
                                v_skip := v_skip || v_lane;
                            END IF;
                        END LOOP;
                        -- The candidates each lane keeps, as an array: the update below then
                        -- reads its rows by key (joined to a CTE with a window, the planner
                        -- walked the whole table for them: 190 ms a claim at 20k jobs).
                        SELECT coalesce(array_agg(k.seq), '{}') INTO v_keep FROM (
                            SELECT c.seq, f.n, row_number() OVER (PARTITION BY c.lane ORDER BY c.ord) AS k
                            FROM unnest(v_seqs, v_lanes) WITH ORDINALITY AS c(seq, lane, ord)
                            LEFT JOIN (
                                SELECT c.name, c.cap - (SELECT count(*) FROM \(t.jobs) r
                                                         WHERE r.state = 'running' AND r.lane = c.name) AS n
                                FROM unnest(v_cap_names, v_caps) AS c(name, cap) WHERE c.name = ANY(v_lanes)
                            ) f ON f.name = c.lane
                            WHERE NOT (c.lane = ANY(v_skip))
                        ) k WHERE k.n IS NULL OR k.k <= k.n;
                        RETURN QUERY
                        WITH picked AS (
                            SELECT q.seq, q.last_node, q.last_node_at, q.handoff_at FROM \(t.jobs) q WHERE q.seq = ANY(v_keep)
                        )
                        UPDATE \(t.jobs) j
                        SET state = 'running', attempts = j.attempts + 1, fence = j.fence + 1, ever_claimed = true,
                            claim_deadline = j.deadline_base + j.ttl_ms, lease_node = p_node,
                            lease_expires_at = p_now + j.lease_ttl_ms, last_node = p_node, last_node_at = p_now,
                            handoff_at = NULL, updated_at = p_now
                        FROM picked WHERE j.seq = picked.seq
                        RETURNING j.seq, j.id, j.spec, j.priority, j.attempts, j.fence, j.stage_index, j.run_at,
                                  j.lease_expires_at, j.stage_names[j.stage_index + 1], j.region_affinity,
                                  picked.last_node, picked.last_node_at, j.outputs, picked.handoff_at, j.lane;
                        GET DIAGNOSTICS v_got = ROW_COUNT;
                        v_taken := v_taken + v_got;
                        EXIT WHEN v_taken >= p_limit OR v_got = cardinality(v_seqs) OR v_round >= 4;
                    END LOOP;
                END
                $$
                """,
            ]),
            (6, [
                // A claim counts the running jobs of each capped lane. Through jobs_lease it
                // walked every running entry of every lane, and the entries of jobs that had
                // finished since the last vacuum: 9 ms of a 12 ms claim while 20k jobs
                // drained. Here a count reads only its own lane's entries.
                "CREATE INDEX jobs_running_lane ON \(t.jobs) (lane) WHERE state = 'running'",
            ]),
            (7, [
                // Schedules (cron) and the record of each tick: which job it enqueued, or why none.
                """
                CREATE TABLE \(t.schema).schedules (
                    id text PRIMARY KEY,
                    source text NOT NULL,
                    spec text NOT NULL,
                    state text NOT NULL,
                    reason text,
                    paused_at bigint,
                    cursor_ms bigint NOT NULL,
                    created_at bigint NOT NULL,
                    updated_at bigint NOT NULL,
                    resumed_at bigint,
                    version bigint NOT NULL
                )
                """,
                """
                CREATE TABLE \(t.schema).schedule_runs (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    schedule_id text NOT NULL,
                    tick_ms bigint NOT NULL,
                    job_id text,
                    manual boolean NOT NULL,
                    note text,
                    at bigint NOT NULL
                )
                """,
                "CREATE INDEX schedule_runs_schedule ON \(t.schema).schedule_runs (schedule_id, seq)",
            ]),
            (8, [
                // Model cooldowns shared by the nodes, and the `llm` calls each job made (its token budget).
                """
                CREATE TABLE \(t.schema).model_cooldowns (
                    provider text NOT NULL,
                    model text NOT NULL,
                    level bigint NOT NULL,
                    until_ms bigint NOT NULL,
                    reason text NOT NULL,
                    since_ms bigint NOT NULL,
                    last_failure_ms bigint NOT NULL,
                    failures bigint NOT NULL,
                    node_id text,
                    key_id text,
                    PRIMARY KEY (provider, model)
                )
                """,
                """
                CREATE TABLE \(t.schema).llm_spend (
                    job_id text NOT NULL,
                    stage text NOT NULL,
                    calls bigint NOT NULL,
                    tokens_sent bigint NOT NULL,
                    first_tokens bigint NOT NULL,
                    PRIMARY KEY (job_id, stage)
                )
                """,
            ]),
            (9, [
                // The tables this step rebuilds indexes of, locked up front in the order an
                // enqueue takes them (keys, then jobs), so that a node still running the
                // previous version waits instead of deadlocking with the rebuild. On a large
                // queue the rebuild holds them for as long as the indexes take to build.
                "LOCK TABLE \(t.idempotency), \(t.jobs), \(t.attempts), \(t.events) IN ACCESS EXCLUSIVE MODE",
                // The drain's cost is mostly index entries (a perf profile of a 3-worker drain:
                // 38 % of the server's CPU in ExecInsertIndexTuples). A claim and a completion
                // each change a job's state, so neither is a HOT update, and every full index on
                // jobs gets an entry for both. jobs_enqueued served only listings, which now go
                // newest first by seq (the order jobs were stored in) through the primary key;
                // dead letters keep a partial index in that order.
                "DROP INDEX \(t.schema).jobs_enqueued",
                "DROP INDEX \(t.schema).jobs_unsuccessful",
                "CREATE INDEX jobs_unsuccessful ON \(t.jobs) (seq) WHERE state IN ('dead', 'expired', 'cancelled')",
                // Ids, lanes and keys are compared byte for byte: under a libc collation every
                // index comparison was a strcoll call. The ids Baton makes sort the same.
                "ALTER TABLE \(t.jobs) ALTER COLUMN id TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.jobs) ALTER COLUMN lane TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.jobs) ALTER COLUMN session_key TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.jobs) ALTER COLUMN idempotency_key TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.attempts) ALTER COLUMN job_id TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.attempts) ALTER COLUMN lane TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.events) ALTER COLUMN job_id TYPE text COLLATE \"C\"",
                "ALTER TABLE \(t.idempotency) ALTER COLUMN key TYPE text COLLATE \"C\"",
                // A finished attempt's row is written again in place (outcome, exit code,
                // output): with room left on its page that is a HOT update, no index entries.
                "ALTER TABLE \(t.attempts) SET (fillfactor = 70)",
            ]),
        ]
    }

    static func migrate(_ connection: PostgresConnection, tables t: PostgresTables, logger: Logger) async throws {
        try await connection.rows("SELECT pg_advisory_xact_lock(hashtext(\("baton.migrate." + t.schema)))", logger: logger)
        try await connection.rows("CREATE SCHEMA IF NOT EXISTS \(unescaped: t.schema)", logger: logger)
        try await connection.rows("""
            CREATE TABLE IF NOT EXISTS \(unescaped: t.migrations) (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var current = 0
        for row in try await connection.rows("SELECT coalesce(max(version), 0) AS version FROM \(unescaped: t.migrations)",
                                             logger: logger) {
            current = Int(try row.get("version", as: Int32.self))
        }
        for migration in migrations(t) where migration.version > current {
            for statement in migration.statements {
                try await connection.rows(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.rows("INSERT INTO \(unescaped: t.migrations) (version) VALUES (\(migration.version))",
                                       logger: logger)
            logger.info("applied PostgreSQL migration \(migration.version) in schema \(t.schema)")
        }
    }
}
