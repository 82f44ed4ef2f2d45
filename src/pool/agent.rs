//! `runner agent`: claims jobs and runs them through the pipeline. Being built (issue #18).
