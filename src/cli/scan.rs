//! `runner scan secrets|deps|image` and `runner db update`.

use super::args::{DbCommand, SbomFormat, ScanCommand, ScanCommon, ScanFormat};
use super::exit::ExitStatus;
use crate::run::scans::{self, Findings};
use crate::scan::secrets::{Baseline, ScanOptions, SecretScanner};
use std::path::{Path, PathBuf};

fn write_out(common: &ScanCommon, text: &str) -> Result<(), String> {
    match &common.output {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn render(
    common: &ScanCommon,
    findings: &Findings,
    verdict: &crate::scan::policy::Verdict,
    rules: &[crate::scan::secrets::RuleMeta],
    max_age_hours: u64,
) -> String {
    match common.effective_format() {
        ScanFormat::Json => {
            let v = serde_json::json!({
                "passed": verdict.passed(),
                "secrets": findings.secrets,
                "vulnerabilities": findings.vulnerabilities,
                "unreadable": findings.unreadable,
                "undecided": findings.undecided,
                "packages": findings.packages,
                "files_scanned": findings.files_scanned,
                "bytes_scanned": findings.bytes_scanned,
                "verdict": verdict,
                "notes": findings.notes,
                "advisory_data": advisory_json(findings, max_age_hours, false),
            });
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        ScanFormat::Sarif => {
            let mut v = crate::scan::sarif::sarif_log(
                env!("CARGO_PKG_VERSION"),
                &findings.secrets,
                &findings.vulnerabilities,
                rules,
            );
            crate::scan::sarif::add_unreadable(&mut v, &findings.unreadable);
            crate::scan::sarif::add_undecided(&mut v, &findings.undecided);
            if let Some(data) = advisory_json(findings, max_age_hours, true) {
                // The run's property bag: when the advisory data was fetched, how old.
                v["runs"][0]["properties"]["advisoryData"] = data;
            }
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        ScanFormat::Table => {
            let mut out = String::new();
            for s in &findings.secrets {
                out.push_str(&format!(
                    "{}:{}:{}  {}  {}  {}{}\n",
                    s.location.path,
                    s.location.line.unwrap_or(0),
                    s.location.column.unwrap_or(0),
                    s.rule_id,
                    s.redacted,
                    s.description,
                    s.location
                        .layer
                        .as_ref()
                        .map(|l| format!("  (layer {})", &l[..l.len().min(19)]))
                        .unwrap_or_default()
                ));
            }
            for v in &findings.vulnerabilities {
                out.push_str(&format!(
                    "{}  {}@{}  {:?}  fixed: {}  {}  ({})\n",
                    v.id,
                    v.package.name,
                    v.package.version,
                    v.severity,
                    v.fixed.as_deref().unwrap_or("-"),
                    v.summary.chars().take(80).collect::<String>(),
                    v.package.location.path
                ));
            }
            for u in &findings.unreadable {
                out.push_str(&format!(
                    "{}  {}  {}\n",
                    u.path,
                    crate::scan::model::UNREADABLE_ID,
                    u.reason
                ));
            }
            for u in &findings.undecided {
                out.push_str(&format!(
                    "{}@{}  {}  not decided: {}  ({})\n",
                    u.package.name,
                    u.package.version,
                    crate::scan::model::UNDECIDED_ID,
                    u.reason,
                    u.package.location.path
                ));
            }
            for n in &findings.notes {
                out.push_str(&format!("note: {n}\n"));
            }
            if let Some(age) = &findings.advisory_data {
                out.push_str(&format!("{}\n", age.describe()));
            }
            out.push_str(&format!(
                "{} secrets, {} vulnerabilities, {} not decided, {} unreadable ({} packages, {} files scanned): policy {}\n",
                findings.secrets.len(),
                findings.vulnerabilities.len(),
                findings.undecided.len(),
                findings.unreadable.len(),
                findings.packages,
                findings.files_scanned,
                if verdict.passed() {
                    "passed".to_string()
                } else {
                    format!("FAILED ({} violations)", verdict.violations.len())
                }
            ));
            for v in &verdict.violations {
                out.push_str(&format!(
                    "  violation: {} {} ({:?})\n",
                    v.id, v.subject, v.severity
                ));
            }
            for e in &verdict.expired {
                out.push_str(&format!("  expired allow entry: {e}\n"));
            }
            out
        }
    }
}

fn finish(
    common: &ScanCommon,
    findings: &Findings,
    rules: &[crate::scan::secrets::RuleMeta],
) -> ExitStatus {
    let (policy, warnings) = match scans::load_policy(common.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    for w in warnings {
        eprintln!("{w}");
    }
    let mut findings = findings.clone();
    if let Some(age) = &findings.advisory_data {
        eprintln!("{}", age.describe());
        if let Some(w) = age.stale_warning(policy.max_data_age_hours) {
            eprintln!("warning: {w}");
            findings.notes.push(w);
        }
    }
    let findings = &findings;
    let verdict = crate::scan::policy::evaluate_all(
        &policy,
        &findings.secrets,
        &findings.vulnerabilities,
        &findings.unreadable,
        &findings.undecided,
        &scans::today(),
    );
    if let Err(e) = write_out(
        common,
        &render(common, findings, &verdict, rules, policy.max_data_age_hours),
    ) {
        eprintln!("error: {e}");
        return ExitStatus::Setup;
    }
    if verdict.passed() {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    }
}

/// The advisory database, and how old its data is.
fn advisories(
    explicit: Option<&Path>,
) -> (
    crate::scan::osv::AdvisoryDb,
    Option<crate::scan::osv::DataAge>,
) {
    let data = super::data_dir();
    let dir = scans::advisories_dir(explicit, &data);
    if explicit.is_some() && dir.is_none() {
        eprintln!("warning: --advisories directory does not exist");
    }
    let (db, note) = scans::open_advisories(dir.as_deref());
    if let Some(n) = &note {
        eprintln!("warning: {n}");
    }
    let age = dir
        .filter(|_| note.is_none())
        .and_then(|d| crate::scan::osv::data_age(&d, time::OffsetDateTime::now_utc()));
    (db, age)
}

/// `advisory_data` of the JSON report (snake_case keys, as the rest of the report) or
/// SARIF's run properties (`advisoryData`, camelCase as SARIF's own): when the data was
/// fetched, its age, and whether that is past the policy's limit.
fn advisory_json(
    findings: &Findings,
    max_age_hours: u64,
    camel: bool,
) -> Option<serde_json::Value> {
    let age = findings.advisory_data.as_ref()?;
    let k = |snake: &'static str, camel_case: &'static str| {
        if camel {
            camel_case
        } else {
            snake
        }
    };
    let mut m = serde_json::Map::new();
    m.insert(
        k("fetched_at", "fetchedAt").into(),
        age.fetched_at.clone().into(),
    );
    m.insert(
        k("age_seconds", "ageSeconds").into(),
        age.age_seconds.into(),
    );
    m.insert("basis".into(), serde_json::json!(age.basis));
    m.insert(
        k("max_age_hours", "maxAgeHours").into(),
        max_age_hours.into(),
    );
    m.insert(
        "stale".into(),
        age.stale_warning(max_age_hours).is_some().into(),
    );
    Some(serde_json::Value::Object(m))
}

pub async fn run(cmd: ScanCommand) -> ExitStatus {
    match cmd {
        ScanCommand::Secrets {
            path,
            baseline,
            write_baseline,
            config,
            no_gitignore,
            common,
        } => {
            let scanner = match &config {
                Some(c) => std::fs::read_to_string(c)
                    .map_err(|e| format!("cannot read {}: {e}", c.display()))
                    .and_then(|t| SecretScanner::from_rule_pack(&t).map_err(|e| e.to_string())),
                None => SecretScanner::default_rules().map_err(|e| e.to_string()),
            };
            let scanner = match scanner {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitStatus::Setup;
                }
            };
            for w in scanner.warnings() {
                eprintln!("warning: {w}");
            }
            let mut opts = ScanOptions {
                respect_gitignore: !no_gitignore,
                ..ScanOptions::default()
            };
            if let Some(b) = &baseline {
                match Baseline::load(b) {
                    Ok(b) => opts.baseline = Some(b),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitStatus::Setup;
                    }
                }
            }
            let out = match scanner.scan_dir(&path, &opts) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitStatus::Setup;
                }
            };
            if let Some(w) = write_baseline {
                return match Baseline::from_findings(&out.findings).save(&w) {
                    Ok(()) => {
                        eprintln!("wrote {} findings to {}", out.findings.len(), w.display());
                        ExitStatus::Success
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitStatus::Setup
                    }
                };
            }
            let findings = Findings {
                secrets: out.findings,
                files_scanned: out.files_scanned,
                bytes_scanned: out.bytes_scanned,
                notes: out.warnings,
                ..Default::default()
            };
            finish(&common, &findings, &scanner.rule_meta())
        }
        ScanCommand::Deps {
            path,
            advisories: adv,
            common,
        } => {
            let (db, age) = advisories(adv.as_deref());
            match scans::scan_deps(&path, &db) {
                Ok(mut f) => {
                    f.advisory_data = age;
                    finish(&common, &f, &[])
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitStatus::Setup
                }
            }
        }
        ScanCommand::Image {
            image,
            advisories: adv,
            sbom,
            common,
        } => {
            let (owned, saved);
            let inv: &crate::scan::image::ImageInventory = if Path::new(&image).exists() {
                let p = PathBuf::from(&image);
                let r = tokio::task::spawn_blocking(move || {
                    crate::scan::image::scan_image_archive(&p).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match r {
                    Ok(i) => {
                        owned = i;
                        &owned
                    }
                    Err(e) => {
                        eprintln!("error: cannot read image {image}: {e}");
                        return ExitStatus::Setup;
                    }
                }
            } else {
                let endpoint = match super::config::engine_endpoint() {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitStatus::Setup;
                    }
                };
                let r = match crate::docker::DockerEngine::connect_to(&endpoint).await {
                    Ok(engine) => {
                        scans::image_inventory(&engine, &image, &super::data_dir().join("tmp"))
                            .await
                    }
                    Err(e) => Err(e.into()),
                };
                match r {
                    Ok(s) => {
                        saved = s;
                        &saved.inventory
                    }
                    Err(e) => {
                        eprintln!("error: cannot read image {image}: {e}");
                        return ExitStatus::Setup;
                    }
                }
            };
            if let Some(kind) = sbom {
                let subject = inv.sbom_subject();
                let doc = match kind {
                    SbomFormat::Cyclonedx => crate::scan::image::sbom::cyclonedx(&subject),
                    SbomFormat::Spdx => crate::scan::image::sbom::spdx(&subject),
                };
                return match write_out(
                    &common,
                    &(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"),
                ) {
                    Ok(()) => ExitStatus::Success,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitStatus::Setup
                    }
                };
            }
            let (db, age) = advisories(adv.as_deref());
            let scanner = match SecretScanner::default_rules() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitStatus::Setup;
                }
            };
            match scans::scan_inventory(inv, &db, &scanner) {
                Ok(mut f) => {
                    f.advisory_data = age;
                    finish(&common, &f, &scanner.rule_meta())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitStatus::Setup
                }
            }
        }
    }
}

/// reqwest behind the OSV updater's blocking `Fetch`.
struct HttpFetch {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl crate::scan::osv::Fetch for HttpFetch {
    fn get(&self, url: &str) -> Result<Vec<u8>, crate::scan::osv::FetchError> {
        self.handle.block_on(async {
            tracing::debug!(url, "downloading advisory data");
            let resp = self.client.get(url).send().await?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("{url} answered {status}").into());
            }
            Ok(resp.bytes().await?.to_vec())
        })
    }
}

pub async fn db(cmd: DbCommand) -> ExitStatus {
    let DbCommand::Update {
        dir,
        base_url,
        ecosystems,
        json,
    } = cmd;
    let fail = |status: ExitStatus, msg: &str| {
        if json {
            println!("{}", serde_json::json!({"ok": false, "error": msg}));
        }
        eprintln!("error: {msg}");
        status
    };
    // --dir / RUNNER_ADVISORIES (clap reads the variable), else the data directory's.
    let dir = dir.unwrap_or_else(|| super::data_dir().join("advisories"));
    let ecosystems: Vec<String> = if ecosystems.is_empty() {
        [
            "crates.io",
            "PyPI",
            "npm",
            "Go",
            "RubyGems",
            "Packagist",
            "Debian",
            "Alpine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        ecosystems
    };
    let client = match reqwest::Client::builder()
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(ExitStatus::Setup, &e.to_string()),
    };
    tracing::debug!(base_url = %base_url, dir = %dir.display(), "updating advisory data");
    let fetch = HttpFetch {
        client,
        handle: tokio::runtime::Handle::current(),
    };
    let result = tokio::task::spawn_blocking(move || {
        let ecos: Vec<&str> = ecosystems.iter().map(String::as_str).collect();
        crate::scan::osv::update(&fetch, base_url.trim_end_matches('/'), &ecos, &dir)
            .map(|u| (u, dir))
    })
    .await;
    match result {
        Ok(Ok((updated, dir))) if json => {
            let ecosystems: Vec<_> = updated
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "ecosystem": u.ecosystem,
                        "records": u.records,
                        "bytes": u.bytes,
                        "path": u.path.display().to_string(),
                    })
                })
                .collect();
            let out = serde_json::json!({
                "ok": true,
                "dir": dir.display().to_string(),
                "updated": ecosystems,
            });
            println!("{out}");
            ExitStatus::Success
        }
        Ok(Ok((updated, dir))) => {
            for u in &updated {
                println!(
                    "{}: {} records, {} bytes -> {}",
                    u.ecosystem,
                    u.records,
                    u.bytes,
                    u.path.display()
                );
            }
            println!("advisory data in {}", dir.display());
            ExitStatus::Success
        }
        Ok(Err(e)) => fail(ExitStatus::Setup, &e.to_string()),
        Err(e) => fail(ExitStatus::Fault, &e.to_string()),
    }
}
