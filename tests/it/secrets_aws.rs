//! `secrets::aws` against a real moto server (see `support_moto.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use runner::buildspec::model::{Env, EnvVar, Pos};
use runner::secrets::aws::{resolve_aws, AwsSecrets, AwsSettings};
use runner::secrets::{Problem, ResolveError};

use crate::support_moto::{closed_endpoint, moto, moto_with_auth};

fn env(params: &[(&str, &str)], secrets: &[(&str, &str)]) -> Env {
    let var = |(i, (n, v)): (usize, &(&str, &str))| EnvVar {
        name: n.to_string(),
        value: v.to_string(),
        pos: Pos {
            line: i as u32 + 1,
            col: 5,
        },
    };
    Env {
        parameter_store: params.iter().enumerate().map(var).collect(),
        secrets_manager: secrets.iter().enumerate().map(var).collect(),
        ..Env::default()
    }
}

async fn resolve(
    settings: AwsSettings,
    params: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> Result<Vec<(String, String)>, ResolveError> {
    AwsSecrets::load(settings)
        .await
        .resolve(&env(params, secrets))
        .await
        .map(|v| {
            v.into_iter()
                .map(|(k, s)| (k, s.expose().to_string()))
                .collect()
        })
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn string_and_secure_string_parameters() {
    let got = resolve(
        moto().settings(),
        &[("PLAIN", "/t/plain"), ("SECURE", "/t/secure")],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        pairs(&[("PLAIN", "plain-value"), ("SECURE", "secure-value")])
    );
}

#[tokio::test]
async fn parameter_versions_and_labels() {
    let got = resolve(
        moto().settings(),
        &[
            ("LATEST", "/t/versioned"),
            ("V1", "/t/versioned:1"),
            ("V2", "/t/versioned:2"),
            ("OLD", "/t/versioned:old"),
            ("PLAIN", "/t/plain"),
        ],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("LATEST", "v3"),
            ("V1", "v1"),
            ("V2", "v2"),
            ("OLD", "v1"),
            ("PLAIN", "plain-value")
        ])
    );
}

#[tokio::test]
async fn more_than_ten_parameters_are_batched() {
    let names: Vec<(String, String)> = (0..25)
        .map(|i| (format!("B{i:02}"), format!("/t/batch/{i:02}")))
        .collect();
    let mut params: Vec<(&str, &str)> = names
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    params.push(("AGAIN", "/t/batch/03"));
    let got = resolve(moto().settings(), &params, &[]).await.unwrap();
    assert_eq!(got.len(), 26);
    for (i, (var, value)) in got.iter().take(25).enumerate() {
        assert_eq!(var, &format!("B{i:02}"));
        assert_eq!(value, &format!("batch-{i:02}"));
    }
    assert_eq!(got[25], ("AGAIN".to_string(), "batch-03".to_string()));
}

#[tokio::test]
async fn secrets_whole_and_json_keys() {
    let got = resolve(
        moto().settings(),
        &[],
        &[
            ("USER", "t/db:username"),
            ("PASSWORD", "t/db:password"),
            ("PORT", "t/db:port"),
            ("OPTS", "t/db:opts"),
            ("TEXT", "t/text"),
            ("BIN_TEXT", "t/bin-text"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("USER", "admin"),
            ("PASSWORD", "pw-2"),
            ("PORT", "5432"),
            ("OPTS", r#"{"ssl":true}"#),
            ("TEXT", "just-text"),
            ("BIN_TEXT", "binary-but-text"),
        ])
    );
    let whole = resolve(moto().settings(), &[], &[("DB", "t/db")])
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&whole[0].1).unwrap();
    assert_eq!(json["password"], "pw-2");
}

#[tokio::test]
async fn secret_version_stage_and_version_id() {
    let m = moto();
    let v1 = m.fixture("db_version_1");
    let v2 = m.fixture("db_version_2");
    let by_id_1 = format!("t/db:password::{v1}");
    let by_id_2 = format!("t/db:password::{v2}");
    let got = resolve(
        m.settings(),
        &[],
        &[
            ("CURRENT", "t/db:password:AWSCURRENT"),
            ("PREVIOUS", "t/db:password:AWSPREVIOUS"),
            ("ID1", &by_id_1),
            ("ID2", &by_id_2),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("CURRENT", "pw-2"),
            ("PREVIOUS", "pw-1"),
            ("ID1", "pw-1"),
            ("ID2", "pw-2")
        ])
    );
}

#[tokio::test]
async fn secret_by_full_arn() {
    let arn = moto().fixture("db_arn");
    assert_eq!(arn.split(':').count(), 7, "{arn}");
    let with_key = format!("{arn}:password");
    let previous = format!("{arn}:password:AWSPREVIOUS");
    let got = resolve(
        moto().settings(),
        &[],
        &[("P", &with_key), ("OLD", &previous)],
    )
    .await
    .unwrap();
    assert_eq!(got, pairs(&[("P", "pw-2"), ("OLD", "pw-1")]));
}

#[tokio::test]
async fn secrets_manager_reference_through_parameter_store() {
    // moto resolves /aws/reference/secretsmanager/<name> in GetParameters (returning the
    // parameter under the secret's bare name); mixed with plain parameters it still works
    // because such names are asked for in their own batch.
    let got = resolve(
        moto().settings(),
        &[
            ("PLAIN", "/t/plain"),
            ("VIA_SSM", "/aws/reference/secretsmanager/t/text"),
            ("SECURE", "/t/secure"),
        ],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("PLAIN", "plain-value"),
            ("VIA_SSM", "just-text"),
            ("SECURE", "secure-value")
        ])
    );
    // A missing secret makes moto fail the whole GetParameters call with
    // ParameterNotFound: it is reported as a missing parameter, the others still resolve.
    let err = resolve(
        moto().settings(),
        &[
            ("PLAIN", "/t/plain"),
            ("GONE", "/aws/reference/secretsmanager/t/gone"),
        ],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.problems,
        [Problem::MissingParameter {
            var: "GONE".into(),
            name: "/aws/reference/secretsmanager/t/gone".into()
        }]
    );
}

#[tokio::test]
async fn missing_parameters_and_secrets_are_all_listed_without_values() {
    let err = resolve(
        moto().settings(),
        &[
            ("OK", "/t/secure"),
            ("NOPE", "/t/nope"),
            ("BAD_VERSION", "/t/versioned:9"),
            ("BAD_LABEL", "/t/versioned:nolabel"),
        ],
        &[
            ("OK2", "t/db:password"),
            ("NO_SECRET", "t/nope"),
            ("NO_STAGE", "t/db:password:AWSPENDING"),
            (
                "NO_ID",
                "t/db:password::00000000-0000-4000-8000-000000000009",
            ),
            ("NO_KEY", "t/db:nokey"),
            ("NOT_JSON", "t/text:key"),
            ("BINARY", "t/bin"),
        ],
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert_eq!(err.problems.len(), 9, "{text}");
    for needle in [
        "cannot resolve secrets (9 problems):",
        "env.parameter-store: NOPE: parameter \"/t/nope\" not found",
        "env.parameter-store: BAD_VERSION: parameter \"/t/versioned:9\" not found",
        "env.parameter-store: BAD_LABEL: parameter \"/t/versioned:nolabel\" not found",
        "env.secrets-manager: NO_SECRET: secret \"t/nope\" not found",
        "env.secrets-manager: NO_STAGE: secret \"t/db\" (version-stage AWSPENDING) not found",
        "env.secrets-manager: NO_ID: secret \"t/db\" (version-id 00000000-0000-4000-8000-000000000009) not found",
        "env.secrets-manager: NO_KEY: secret \"t/db\" has no JSON key \"nokey\"",
        "env.secrets-manager: NOT_JSON: secret \"t/text\" is not a JSON object",
        "binary secret \"t/bin\" is not text; runner cannot inject it into an environment variable",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(text.lines().count(), 10, "one line per problem:\n{text}");
    for value in ["secure-value", "pw-", "admin", "just-text", "v1", "v3"] {
        assert!(!text.contains(value), "value {value:?} leaked:\n{text}");
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_named_and_fails_fast() {
    let endpoint = closed_endpoint();
    let settings = AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        ..moto().settings()
    };
    let started = Instant::now();
    let err = resolve(
        settings,
        &[("A", "/t/plain"), ("B", "/t/secure")],
        &[("C", "t/db:password"), ("D", "t/text")],
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    let text = err.to_string();
    eprintln!("{text}\n(took {elapsed:?})");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    // One problem per service, not one per reference.
    assert_eq!(
        err.problems,
        [
            Problem::Unreachable {
                service: "Parameter Store",
                endpoint: endpoint.clone(),
                detail: "connection refused".into()
            },
            Problem::Unreachable {
                service: "Secrets Manager",
                endpoint: endpoint.clone(),
                detail: "connection refused".into()
            },
        ]
    );
    assert!(text.contains(&format!(
        "cannot reach Secrets Manager at {endpoint}: connection refused — check AWS_ENDPOINT_URL / network"
    )));
}

#[tokio::test]
async fn invalid_references_are_reported_before_any_request() {
    let settings = AwsSettings {
        endpoint_url: Some(closed_endpoint()),
        ..moto().settings()
    };
    let err = resolve(
        settings,
        &[("P", "/a:b:c")],
        &[("S", "prod/db:key:AWSCURRENT:some-id")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(err
        .problems
        .iter()
        .all(|p| matches!(p, Problem::InvalidReference { .. })));
    assert!(err
        .to_string()
        .contains("use version-stage or version-id, not both"));
}

#[tokio::test]
async fn access_denied_names_variable_and_reference() {
    let m = moto_with_auth();
    let settings = m.settings_with(&m.fixture("access_key_id"), &m.fixture("secret_access_key"));
    // The user may call ssm:GetParameters but not secretsmanager:GetSecretValue.
    let err = resolve(
        settings,
        &[("PARAM", "/auth/param")],
        &[("SECRET", "auth/secret")],
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert_eq!(
        err.problems,
        [Problem::AccessDenied {
            section: runner::secrets::error::Section::SecretsManager,
            var: "SECRET".into(),
            reference: "auth/secret".into()
        }],
        "{text}"
    );
    assert!(!text.contains("auth-secret-value") && !text.contains("auth-param-value"));
    // Unknown keys are rejected by moto's IAM: not a missing secret, not a value leak.
    let err = resolve(m.settings(), &[("PARAM", "/auth/param")], &[])
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err.problems[0], Problem::AccessDenied { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn no_references_needs_no_aws() {
    assert!(resolve_aws(&Env::default()).await.unwrap().is_empty());
}

// ---- Process-global configuration (env vars) is tested in a child process: this test
// ---- binary re-runs itself with only `env_child` and a prepared environment.

const CHILD_MODE: &str = "RUNNER_SECRETS_TEST_CHILD";

fn run_child(mode: &str, vars: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "secrets_aws::env_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(CHILD_MODE, mode)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {mode} failed:\n{stdout}\n{stderr}"
    );
}

fn keys() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

#[test]
fn sdk_honours_service_specific_endpoint_env_vars() {
    let m = moto();
    let closed = closed_endpoint();
    let mut vars = keys().to_vec();
    vars.extend([
        ("AWS_ENDPOINT_URL", closed.as_str()),
        ("AWS_ENDPOINT_URL_SSM", m.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", m.endpoint.as_str()),
        ("EXPECT_ENDPOINT", m.endpoint.as_str()),
    ]);
    run_child("resolve", &vars);
}

#[test]
fn sdk_honours_global_endpoint_env_var() {
    let m = moto();
    let mut vars = keys().to_vec();
    vars.extend([
        ("AWS_ENDPOINT_URL", m.endpoint.as_str()),
        ("EXPECT_ENDPOINT", m.endpoint.as_str()),
    ]);
    run_child("resolve", &vars);
}

#[test]
fn no_region_is_a_clear_error() {
    run_child(
        "no-region",
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
}

#[test]
fn no_credentials_is_a_clear_error() {
    let m = moto();
    run_child(
        "no-credentials",
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", m.endpoint.as_str()),
        ],
    );
}

#[tokio::test]
#[ignore = "run by the tests above in a child process with a prepared environment"]
async fn env_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let env = env(&[("P", "/t/plain")], &[("S", "t/text")]);
    match mode.as_str() {
        "resolve" => {
            let expect = std::env::var("EXPECT_ENDPOINT").unwrap();
            let aws = AwsSecrets::from_env().await;
            assert_eq!(aws.endpoints(), (expect.as_str(), expect.as_str()));
            let got = resolve_aws(&env).await.unwrap();
            let got: Vec<_> = got.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
            assert_eq!(got, [("P", "plain-value"), ("S", "just-text")]);
        }
        "no-region" => {
            let err = resolve_aws(&env).await.unwrap_err();
            let text = err.to_string();
            eprintln!("{text}");
            assert_eq!(err.problems, [Problem::NoRegion], "{text}");
        }
        "no-credentials" => {
            let started = Instant::now();
            let err = resolve_aws(&env).await.unwrap_err();
            let text = err.to_string();
            eprintln!("{text}\n(took {:?})", started.elapsed());
            assert!(
                err.problems
                    .iter()
                    .all(|p| matches!(p, Problem::Setup { .. })),
                "{text}"
            );
            assert!(text.to_lowercase().contains("credential"), "{text}");
            assert!(text.contains("no credentials found in chain"), "{text}");
            assert!(text.contains("aws sso login"), "{text}");
            assert_eq!(text.lines().count(), 3, "one line per problem:\n{text}");
            assert!(started.elapsed() < Duration::from_secs(15));
        }
        other => panic!("unknown child mode {other}"),
    }
}
