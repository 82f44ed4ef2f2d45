//! SLSA v1 provenance for an image runner built: what was built (the subject is set by
//! the attestation), from what (source URI and revision, the buildspec), by whom (the
//! builder id), when.

use serde_json::{json, Value};

pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const BUILD_TYPE: &str = "https://github.com/runner-build/runner/buildspec@v1";

#[derive(Debug, Clone, Default)]
pub struct ProvenanceInput {
    pub source_uri: String,
    pub revision: Option<String>,
    pub buildspec: String,
    pub build_id: String,
    pub builder_id: String,
    pub build_image: Option<String>,
    /// RFC 3339.
    pub started_on: String,
    pub finished_on: String,
}

pub fn slsa_v1(input: &ProvenanceInput) -> Value {
    let mut source = json!({"uri": input.source_uri});
    if let Some(rev) = &input.revision {
        source["revision"] = json!(rev);
    }
    let mut deps = Vec::new();
    if let Some(rev) = &input.revision {
        deps.push(
            json!({"uri": format!("git+{}", input.source_uri), "digest": {"gitCommit": rev}}),
        );
    }
    if let Some(image) = &input.build_image {
        deps.push(json!({"uri": image, "annotations": {"role": "build-image"}}));
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": source,
                "buildspec": input.buildspec,
            },
            "internalParameters": {},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": input.builder_id},
            "metadata": {
                "invocationId": input.build_id,
                "startedOn": input.started_on,
                "finishedOn": input.finished_on,
            },
        },
    })
}
