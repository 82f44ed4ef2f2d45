//! The job store: SQLite (embedded, the default) or PostgreSQL (several server replicas).
//! Being built (issue #18).
