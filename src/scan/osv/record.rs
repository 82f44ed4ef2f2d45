//! The OSV record model (<https://ossf.github.io/osv-schema/>), the parts the scanner
//! uses. Unknown fields are ignored; missing lists default to empty.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vuln {
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: AffectedPackage,
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One range event; exactly one field is set in a valid record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The cheap pre-scan view of a record: only what the index needs. Everything else is
/// skipped by the JSON lexer without allocating.
#[derive(Debug, Deserialize)]
pub struct PreScan<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub withdrawn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub affected: Vec<PreAffected<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct PreAffected<'a> {
    #[serde(borrow, default)]
    pub package: Option<PrePackage<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct PrePackage<'a> {
    #[serde(borrow, default)]
    pub ecosystem: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}
