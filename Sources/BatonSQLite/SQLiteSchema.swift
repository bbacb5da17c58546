import GRDB

/// One numbered step of the SQLite schema. Steps are applied in order, once, at start-up.
protocol SQLiteMigration {
    static var version: Int { get }
    static func apply(_ db: Database) throws
}

/// Applies pending migrations under an immediate transaction, so several processes opening the
/// same file at once apply each step exactly once. The applied version is `PRAGMA user_version`.
enum SQLiteSchema {
    static var migrations: [any SQLiteMigration.Type] { [Migration0001Initial.self, Migration0002Cluster.self, Migration0003Chains.self, Migration0004Lanes.self,
                                                             Migration0005Schedules.self, Migration0006Models.self] }

    static func migrate(_ db: Database) throws {
        try db.inTransaction(.immediate) {
            let current = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
            for migration in migrations where migration.version > current {
                try migration.apply(db)
                try db.execute(sql: "PRAGMA user_version = \(migration.version)")
            }
            return .commit
        }
    }
}

enum Migration0001Initial: SQLiteMigration {
    static let version = 1

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE jobs (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                state TEXT NOT NULL,
                lane TEXT NOT NULL,
                session_key TEXT,
                region_affinity TEXT,
                priority INTEGER NOT NULL,
                idempotency_key TEXT,
                spec TEXT NOT NULL,
                stage_index INTEGER NOT NULL DEFAULT 0,
                stage_count INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                fence INTEGER NOT NULL DEFAULT 0,
                ever_claimed INTEGER NOT NULL DEFAULT 0,
                enqueued_at INTEGER NOT NULL,
                deadline_base INTEGER NOT NULL,
                claim_deadline INTEGER NOT NULL,
                run_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                lease_node TEXT,
                lease_expires_at INTEGER,
                retry_count INTEGER NOT NULL DEFAULT 0,
                cumulative_backoff_ms INTEGER NOT NULL DEFAULT 0,
                last_error_class TEXT,
                last_reason TEXT,
                last_message TEXT,
                finished_at INTEGER
            );
            CREATE INDEX jobs_ready ON jobs(priority DESC, run_at, seq) WHERE state IN ('queued', 'retry_wait');
            CREATE INDEX jobs_deadline ON jobs(claim_deadline) WHERE state IN ('queued', 'retry_wait');
            CREATE INDEX jobs_lease ON jobs(lease_expires_at) WHERE state = 'running';
            CREATE INDEX jobs_state ON jobs(state, enqueued_at, seq);
            CREATE INDEX jobs_lane ON jobs(lane, enqueued_at, seq);
            CREATE INDEX jobs_enqueued ON jobs(enqueued_at, seq);

            CREATE TABLE idempotency_keys (
                key TEXT PRIMARY KEY NOT NULL,
                job_id TEXT NOT NULL,
                expires_at INTEGER NOT NULL
            );
            CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);

            CREATE TABLE attempts (
                job_id TEXT NOT NULL,
                fence INTEGER NOT NULL,
                stage_index INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                stage_name TEXT NOT NULL,
                node_id TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                finished_at INTEGER,
                outcome TEXT NOT NULL,
                error_class TEXT,
                reason TEXT,
                message TEXT,
                exit_code INTEGER,
                stdout TEXT,
                stderr TEXT,
                log_path TEXT,
                PRIMARY KEY (job_id, fence, stage_index)
            );

            CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                job_id TEXT NOT NULL,
                at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                node_id TEXT,
                stage TEXT,
                attempt INTEGER,
                fence INTEGER,
                detail TEXT
            );
            CREATE INDEX events_job ON events(job_id, seq);
            """)
    }
}

/// The node registry, the handover log's "last holder" columns and region fallback.
enum Migration0002Cluster: SQLiteMigration {
    static let version = 2

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE jobs ADD COLUMN last_node TEXT;
            ALTER TABLE jobs ADD COLUMN last_node_at INTEGER;
            ALTER TABLE jobs ADD COLUMN region_fallback_ms INTEGER;
            CREATE INDEX jobs_lease_node ON jobs(lease_node) WHERE state = 'running';

            CREATE TABLE nodes (
                id TEXT PRIMARY KEY NOT NULL,
                instance TEXT NOT NULL,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                region TEXT,
                tags TEXT NOT NULL,
                capacity INTEGER NOT NULL,
                version TEXT NOT NULL,
                config_hash TEXT NOT NULL,
                heartbeat_interval_ms INTEGER NOT NULL,
                dead_after_ms INTEGER NOT NULL,
                state TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                last_seen INTEGER NOT NULL,
                in_flight INTEGER NOT NULL DEFAULT 0
            );
            """)
    }
}

/// Chains: the current stage's placement, stage outputs, handoff timing, HTTP status, and the
/// human gates on idempotency keys that keep dying.
enum Migration0003Chains: SQLiteMigration {
    static let version = 3

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE jobs ADD COLUMN node_tags TEXT;
            ALTER TABLE jobs ADD COLUMN outputs TEXT;
            ALTER TABLE jobs ADD COLUMN handoff_at INTEGER;
            CREATE INDEX jobs_gated ON jobs(idempotency_key, seq) WHERE state = 'gated';
            ALTER TABLE attempts ADD COLUMN http_status INTEGER;
            ALTER TABLE attempts ADD COLUMN outputs TEXT;
            ALTER TABLE attempts ADD COLUMN handoff_ms INTEGER;

            CREATE TABLE dead_letter_keys (
                key TEXT NOT NULL,
                job_id TEXT NOT NULL,
                at INTEGER NOT NULL
            );
            CREATE INDEX dead_letter_keys_key ON dead_letter_keys(key, at);

            CREATE TABLE gates (
                key TEXT PRIMARY KEY NOT NULL,
                state TEXT NOT NULL,
                held_since INTEGER NOT NULL,
                reason TEXT NOT NULL,
                dead_jobs TEXT NOT NULL,
                released_at INTEGER
            );
            """)
    }
}

/// Lanes with cluster-wide caps, sessions (one running job per key, FIFO), priority ageing and
/// the queue wait of every start.
enum Migration0004Lanes: SQLiteMigration {
    static let version = 4

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE lanes (
                name TEXT PRIMARY KEY NOT NULL,
                cap INTEGER,
                updated_at INTEGER NOT NULL
            );
            ALTER TABLE jobs ADD COLUMN base_priority INTEGER;
            UPDATE jobs SET base_priority = priority WHERE state IN ('queued', 'retry_wait', 'running', 'gated');
            CREATE INDEX jobs_session ON jobs(session_key, seq)
                WHERE session_key IS NOT NULL AND state IN ('queued', 'retry_wait', 'running');
            ALTER TABLE attempts ADD COLUMN lane TEXT;
            ALTER TABLE attempts ADD COLUMN wait_ms INTEGER;
            CREATE INDEX attempts_waits ON attempts(lane, started_at) WHERE wait_ms IS NOT NULL;

            CREATE TABLE inbound_seen (
                key TEXT PRIMARY KEY NOT NULL,
                job_id TEXT NOT NULL,
                expires_at INTEGER NOT NULL
            );
            CREATE INDEX inbound_seen_expiry ON inbound_seen(expires_at);
            CREATE TABLE inbound_batches (
                session_key TEXT PRIMARY KEY NOT NULL,
                job_id TEXT NOT NULL
            );
            """)
    }
}

/// Schedules (cron) and the record of each tick: which job it enqueued, or why none.
enum Migration0005Schedules: SQLiteMigration {
    static let version = 5

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE schedules (
                id TEXT PRIMARY KEY NOT NULL,
                source TEXT NOT NULL,
                spec TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                paused_at INTEGER,
                cursor_ms INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                resumed_at INTEGER,
                version INTEGER NOT NULL
            );
            CREATE TABLE schedule_runs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                schedule_id TEXT NOT NULL,
                tick_ms INTEGER NOT NULL,
                job_id TEXT,
                manual INTEGER NOT NULL,
                note TEXT,
                at INTEGER NOT NULL
            );
            CREATE INDEX schedule_runs_schedule ON schedule_runs(schedule_id, seq);
            """)
    }
}

/// Model cooldowns shared by the nodes, and the `llm` calls each job made (its token budget).
enum Migration0006Models: SQLiteMigration {
    static let version = 6

    static func apply(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE model_cooldowns (
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                level INTEGER NOT NULL,
                until_ms INTEGER NOT NULL,
                reason TEXT NOT NULL,
                since_ms INTEGER NOT NULL,
                last_failure_ms INTEGER NOT NULL,
                failures INTEGER NOT NULL,
                node_id TEXT,
                key_id TEXT,
                PRIMARY KEY (provider, model)
            );
            CREATE TABLE llm_spend (
                job_id TEXT NOT NULL,
                stage TEXT NOT NULL,
                calls INTEGER NOT NULL,
                tokens_sent INTEGER NOT NULL,
                first_tokens INTEGER NOT NULL,
                PRIMARY KEY (job_id, stage)
            );
            """)
    }
}
