CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    label_key TEXT NOT NULL,
    labels TEXT NOT NULL,
    project TEXT NOT NULL,
    spec TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    lost BIGINT NOT NULL DEFAULT 0,
    lease TEXT,
    lease_expires BIGINT,
    agent TEXT,
    created BIGINT NOT NULL,
    queued BIGINT NOT NULL,
    finished BIGINT,
    exit_code BIGINT,
    message TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    log_truncated BIGINT NOT NULL DEFAULT 0,
    log_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs (state, label_key, queued);
CREATE INDEX jobs_leases ON jobs (state, lease_expires);
CREATE INDEX jobs_created ON jobs (created);
CREATE TABLE attempts (
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    agent TEXT NOT NULL,
    lease TEXT NOT NULL,
    started BIGINT NOT NULL,
    ended BIGINT,
    outcome TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE log_chunks (
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE TABLE artifacts (
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, name)
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY NOT NULL,
    labels TEXT NOT NULL,
    last_seen BIGINT NOT NULL
);
