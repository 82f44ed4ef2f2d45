use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use memchr::{memchr, memmem, memrchr};
use sha2::{Digest, Sha256};

use super::allow::Candidate;
use super::encoding::decode_base64;
use super::entropy::shannon_entropy;
use super::error::SecretsError;
use super::gitleaks::parse_rule_pack;
use super::rules::{Rule, RuleMeta, RulePack, Validator};
use super::DEFAULT_RULES_TOML;
use crate::scan::model::{Location, SecretFinding};

/// How far past its keyword a multi-line rule (PEM blocks) may match.
const MULTILINE_WINDOW: usize = 64 * 1024;
/// Files with a NUL byte in this prefix are binary and skipped.
pub(crate) const BINARY_SNIFF_LEN: usize = 8 * 1024;
/// Redacted findings shorter than this show no characters at all.
const MIN_REVEAL_LEN: usize = 16;
const INLINE_ALLOW: [&[u8]; 2] = [b"gitleaks:allow", b"runner:allow"];

/// A compiled rule pack plus the keyword automaton that gates its regexes.
#[derive(Debug, Clone)]
pub struct SecretScanner {
    pack: RulePack,
    keywords: Option<AhoCorasick>,
    /// Keyword pattern id -> rules having that keyword.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules with a regex and no keywords: run on every file.
    always: Vec<usize>,
    /// Rules with only a path: the matching file is the finding.
    path_only: Vec<usize>,
    any_rule_path: bool,
}

/// One regex match before filtering: byte offsets into the scanned data.
#[derive(Debug, Clone, Copy)]
struct Hit {
    rule: usize,
    m_start: usize,
    m_end: usize,
    s_start: usize,
    s_end: usize,
}

pub(crate) fn is_binary(data: &[u8]) -> bool {
    memchr(0, &data[..data.len().min(BINARY_SNIFF_LEN)]).is_some()
}

fn line_start(data: &[u8], pos: usize) -> usize {
    memrchr(b'\n', &data[..pos]).map_or(0, |i| i + 1)
}

fn line_end(data: &[u8], pos: usize) -> usize {
    memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i)
}

fn redact(secret: &[u8], fully: bool) -> String {
    let text = String::from_utf8_lossy(secret);
    if fully || text.chars().count() < MIN_REVEAL_LEN {
        return "***".to_string();
    }
    let mut out: String = text.chars().take(4).collect();
    out.push_str("***");
    out
}

fn fingerprint(rule_id: &str, path: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update(b":");
    h.update(path.as_bytes());
    h.update(b":");
    h.update(secret);
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

fn valid_jwt(secret: &[u8]) -> bool {
    let mut parts = secret.split(|&b| b == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = decode_base64(header) else {
        return false;
    };
    let header_ok = serde_json::from_slice::<serde_json::Value>(&header)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.contains_key("alg") || o.contains_key("typ"))
        })
        .unwrap_or(false);
    header_ok && decode_base64(payload).is_some_and(|p| p.trim_ascii_start().first() == Some(&b'{'))
}

fn valid_docker_auth(secret: &[u8], data: &[u8]) -> bool {
    if memmem::find(data, b"\"auths\"").is_none() {
        return false;
    }
    let Some(decoded) = decode_base64(secret) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return false;
    };
    match text.split_once(':') {
        Some((user, pass)) => {
            !user.is_empty() && !pass.is_empty() && !text.chars().any(char::is_control)
        }
        None => false,
    }
}

impl SecretScanner {
    /// Compiles a gitleaks-format TOML rule pack.
    pub fn from_rule_pack(text: &str) -> Result<Self, SecretsError> {
        Self::from_pack(parse_rule_pack(text)?)
    }

    /// The rule pack shipped with runner (`scanners/secrets/rules.toml`).
    pub fn default_rules() -> Result<Self, SecretsError> {
        Self::from_rule_pack(DEFAULT_RULES_TOML)
    }

    /// Builds the scanner from an already compiled pack.
    pub fn from_pack(pack: RulePack) -> Result<Self, SecretsError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        let mut path_only = Vec::new();
        for (i, rule) in pack.rules.iter().enumerate() {
            if rule.regex.is_none() {
                path_only.push(i);
            } else if rule.keywords.is_empty() {
                always.push(i);
            } else {
                for k in &rule.keywords {
                    if !patterns.contains(k) {
                        patterns.push(k.clone());
                    }
                }
            }
        }
        // The search is leftmost-longest and resumes one byte after each match start,
        // so every start position is seen; a keyword nested in a longer one at the
        // same spot is covered by giving the longer one the shorter one's rules.
        for p in &patterns {
            let mut ids: Vec<usize> = pack
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.regex.is_some() && r.keywords.iter().any(|k| p.contains(k.as_str()))
                })
                .map(|(i, _)| i)
                .collect();
            ids.dedup();
            keyword_rules.push(ids);
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .map_err(|e| SecretsError::Keywords(e.to_string()))?,
            )
        };
        let any_rule_path = pack.rules.iter().any(|r| r.path.is_some());
        Ok(Self {
            pack,
            keywords,
            keyword_rules,
            always,
            path_only,
            any_rule_path,
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.pack.rules
    }

    pub fn rule_meta(&self) -> Vec<RuleMeta> {
        self.pack.rules.iter().map(Rule::meta).collect()
    }

    /// Non-fatal problems met while loading the rule pack.
    pub fn warnings(&self) -> &[String] {
        &self.pack.warnings
    }

    /// True when a global path allowlist excludes the whole file.
    pub fn path_allowed(&self, path: &str) -> bool {
        self.pack
            .allowlists
            .iter()
            .any(|a| a.allows_path_alone(path))
    }

    /// Scans one file's contents. `path_label` is the path reported (relative to the
    /// scanned root, or the path inside an image); `layer` the image layer digest.
    /// Binary content (a NUL in the first 8 KiB) yields no findings.
    pub fn scan_bytes(
        &self,
        path_label: &str,
        data: &[u8],
        layer: Option<&str>,
    ) -> Vec<SecretFinding> {
        if self.path_allowed(path_label) || is_binary(data) {
            return Vec::new();
        }
        let rules = &self.pack.rules;
        let applicable: Vec<bool> = if self.any_rule_path {
            rules
                .iter()
                .map(|r| {
                    r.path
                        .as_ref()
                        .is_none_or(|p| p.is_match(path_label.as_bytes()))
                })
                .collect()
        } else {
            vec![true; rules.len()]
        };

        let mut hits = Vec::new();
        if let Some(ac) = &self.keywords {
            let mut covered = vec![0usize; rules.len()];
            let mut from = 0;
            while let Some(m) = ac.find(Input::new(data).range(from..)) {
                from = m.start() + 1;
                for &ri in &self.keyword_rules[m.pattern().as_usize()] {
                    if !applicable[ri] || covered[ri] > m.start() {
                        continue;
                    }
                    let ws = line_start(data, m.start());
                    let we = if rules[ri].multiline {
                        line_end(data, data.len().min(m.end() + MULTILINE_WINDOW))
                    } else {
                        line_end(data, m.end())
                    };
                    self.run_regex(ri, data, ws, we, &mut hits);
                    covered[ri] = we + 1;
                }
            }
        }
        for &ri in &self.always {
            if applicable[ri] {
                self.run_regex(ri, data, 0, data.len(), &mut hits);
            }
        }

        hits.retain(|h| self.keep(h, path_label, data));
        dedup_overlaps(&mut hits, rules);
        hits.sort_by_key(|h| (h.s_start, h.rule));

        let mut findings = Vec::with_capacity(hits.len());
        for &ri in &self.path_only {
            if applicable[ri] {
                findings.push(self.finding(ri, path_label, b"", None, layer));
            }
        }
        let (mut line, mut pos) = (1u32, 0usize);
        for h in &hits {
            let newlines = memchr::memchr_iter(b'\n', &data[pos..h.s_start]).count();
            line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
            pos = h.s_start;
            let ls = line_start(data, h.s_start);
            let column = data[ls..h.s_start]
                .iter()
                .filter(|&&b| (b & 0xC0) != 0x80)
                .count()
                + 1;
            let column = u32::try_from(column).unwrap_or(u32::MAX);
            let secret = &data[h.s_start..h.s_end];
            findings.push(self.finding(h.rule, path_label, secret, Some((line, column)), layer));
        }
        findings
    }

    fn finding(
        &self,
        ri: usize,
        path: &str,
        secret: &[u8],
        pos: Option<(u32, u32)>,
        layer: Option<&str>,
    ) -> SecretFinding {
        let rule = &self.pack.rules[ri];
        SecretFinding {
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            location: Location {
                path: path.to_string(),
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                layer: layer.map(str::to_string),
            },
            redacted: redact(secret, rule.redact_fully),
            fingerprint: fingerprint(&rule.id, path, secret),
            severity: rule.severity,
            verified_format: rule.verified_format,
        }
    }

    fn run_regex(&self, ri: usize, data: &[u8], ws: usize, we: usize, hits: &mut Vec<Hit>) {
        let rule = &self.pack.rules[ri];
        let Some(re) = &rule.regex else {
            return;
        };
        for caps in re.captures_iter(&data[ws..we]) {
            let Some(m) = caps.get(0) else { continue };
            if m.is_empty() {
                continue;
            }
            let secret = match rule.secret_group {
                Some(g) => caps.get(g),
                None => caps.iter().skip(1).flatten().find(|g| !g.is_empty()),
            }
            .unwrap_or(m);
            if rule.secret_group.is_some() && secret.is_empty() {
                continue;
            }
            hits.push(Hit {
                rule: ri,
                m_start: ws + m.start(),
                m_end: ws + m.end(),
                s_start: ws + secret.start(),
                s_end: ws + secret.end(),
            });
        }
    }

    /// Entropy, inline-allow comments, allowlists and validators.
    fn keep(&self, h: &Hit, path: &str, data: &[u8]) -> bool {
        let rule = &self.pack.rules[h.rule];
        let secret = &data[h.s_start..h.s_end];
        if secret.is_empty() {
            return false;
        }
        if let Some(min) = rule.entropy {
            if shannon_entropy(secret) < min {
                return false;
            }
        }
        let ls = line_start(data, h.m_start);
        let le = line_end(data, h.m_end.saturating_sub(1).max(ls));
        let line = &data[ls..le];
        if INLINE_ALLOW
            .iter()
            .any(|marker| memmem::find(line, marker).is_some())
        {
            return false;
        }
        let cand = Candidate {
            path,
            secret,
            matched: &data[h.m_start..h.m_end],
            line,
        };
        if rule.allowlists.iter().any(|a| a.allows(&cand)) {
            return false;
        }
        if self
            .pack
            .allowlists
            .iter()
            .any(|a| a.target_rules.is_empty() && a.allows(&cand))
        {
            return false;
        }
        match rule.validate {
            None => true,
            Some(Validator::Jwt) => valid_jwt(secret),
            Some(Validator::DockerAuth) => valid_docker_auth(secret, data),
        }
    }
}

/// When two findings cover the same bytes, keep the format-checked one, then a
/// non-`generic*` rule, then the earlier rule in the pack: `GITHUB_TOKEN=ghp_...` is a
/// GitHub token, not a generic assignment (also for gitleaks configs, whose rules
/// are sorted by id and carry no `verifiedFormat`).
fn dedup_overlaps(hits: &mut Vec<Hit>, rules: &[Rule]) {
    if hits.len() < 2 {
        return;
    }
    let rank = |h: &Hit| {
        let r = &rules[h.rule];
        (!r.verified_format, r.id.starts_with("generic"), h.rule)
    };
    hits.sort_by_key(|h| (h.s_start, h.s_end));
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    let mut i = 0;
    while i < hits.len() {
        // A cluster: hits chained by overlap. Usually one or two long.
        let mut end = hits[i].s_end;
        let mut j = i + 1;
        while j < hits.len() && hits[j].s_start < end {
            end = end.max(hits[j].s_end);
            j += 1;
        }
        let mut cluster = hits[i..j].to_vec();
        cluster.sort_by_key(|h| rank(h));
        let first_kept = out.len();
        for h in cluster {
            if !out[first_kept..]
                .iter()
                .any(|k| k.s_start < h.s_end && h.s_start < k.s_end)
            {
                out.push(h);
            }
        }
        i = j;
    }
    *hits = out;
}
