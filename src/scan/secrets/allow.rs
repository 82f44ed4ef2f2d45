use regex::bytes::Regex;

/// How the criteria of an allowlist combine (gitleaks `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Any one criterion allows the finding (gitleaks' default).
    #[default]
    Or,
    /// Every configured criterion must match.
    And,
}

/// What an allowlist's `regexes` are matched against (gitleaks `regexTarget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegexTarget {
    /// The extracted secret (default).
    #[default]
    Secret,
    /// The whole regex match.
    Match,
    /// The whole line(s) the match is on.
    Line,
}

/// A compiled allowlist: global (`[allowlist]`) or per rule (`[[rules.allowlists]]`).
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    pub description: String,
    pub condition: Condition,
    pub regex_target: RegexTarget,
    pub regexes: Vec<Regex>,
    pub paths: Vec<Regex>,
    /// Lower-cased; a secret containing one of them is allowed.
    pub stopwords: Vec<String>,
    /// Git commits; a directory scan has none, so these never match.
    pub commits: Vec<String>,
    /// Global allowlists only: restrict to these rule ids (gitleaks `targetRules`).
    pub target_rules: Vec<String>,
}

/// The pieces of one candidate finding an allowlist looks at.
pub(crate) struct Candidate<'a> {
    pub path: &'a str,
    pub secret: &'a [u8],
    pub matched: &'a [u8],
    pub line: &'a [u8],
}

impl Allowlist {
    fn is_empty(&self) -> bool {
        self.regexes.is_empty()
            && self.paths.is_empty()
            && self.stopwords.is_empty()
            && self.commits.is_empty()
    }

    /// True when this allowlist only looks at paths, so a whole file can be skipped.
    pub(crate) fn allows_path_alone(&self, path: &str) -> bool {
        if self.paths.is_empty() || !self.target_rules.is_empty() {
            return false;
        }
        let path_hit = self.paths.iter().any(|r| r.is_match(path.as_bytes()));
        match self.condition {
            Condition::Or => path_hit,
            Condition::And => {
                path_hit
                    && self.regexes.is_empty()
                    && self.stopwords.is_empty()
                    && self.commits.is_empty()
            }
        }
    }

    pub(crate) fn allows(&self, c: &Candidate<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let target = match self.regex_target {
            RegexTarget::Secret => c.secret,
            RegexTarget::Match => c.matched,
            RegexTarget::Line => c.line,
        };
        // Evaluate lazily: each criterion is `None` when not configured.
        let regex_hit =
            || (!self.regexes.is_empty()).then(|| self.regexes.iter().any(|r| r.is_match(target)));
        let path_hit = || {
            (!self.paths.is_empty())
                .then(|| self.paths.iter().any(|r| r.is_match(c.path.as_bytes())))
        };
        let stopword_hit = || {
            (!self.stopwords.is_empty()).then(|| {
                let lower = c.secret.to_ascii_lowercase();
                self.stopwords
                    .iter()
                    .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
            })
        };
        let commit_hit = || (!self.commits.is_empty()).then_some(false);
        match self.condition {
            Condition::Or => {
                path_hit() == Some(true)
                    || regex_hit() == Some(true)
                    || stopword_hit() == Some(true)
                    || commit_hit() == Some(true)
            }
            Condition::And => [path_hit(), regex_hit(), stopword_hit(), commit_hit()]
                .iter()
                .all(|r| *r != Some(false)),
        }
    }
}
