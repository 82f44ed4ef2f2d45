//! `runner server`: the HTTP API over the job store. Being built (issue #18).
