CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    label_key TEXT NOT NULL,
    labels TEXT NOT NULL,
    project TEXT NOT NULL,
    spec TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    lease_expires INTEGER,
    agent TEXT,
    created INTEGER NOT NULL,
    queued INTEGER NOT NULL,
    finished INTEGER,
    exit_code INTEGER,
    message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    log_truncated INTEGER NOT NULL DEFAULT 0,
    log_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs (state, label_key, queued);
CREATE INDEX jobs_leases ON jobs (state, lease_expires);
CREATE INDEX jobs_created ON jobs (created);
CREATE TABLE attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent TEXT NOT NULL,
    lease TEXT NOT NULL,
    started INTEGER NOT NULL,
    ended INTEGER,
    outcome TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE log_chunks (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE TABLE artifacts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, name)
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY NOT NULL,
    labels TEXT NOT NULL,
    last_seen INTEGER NOT NULL
);
