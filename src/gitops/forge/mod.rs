//! Pull/merge requests on GitHub (incl. Enterprise), GitLab and Gitea/Forgejo.
//!
//! [`open_or_update`] is the only entry point the orchestration needs: find the open PR
//! for the head branch and update it, else create one; a "PR already exists" answer
//! from a race with another runner is treated as success by looking the PR up again.

pub mod gitea;
pub mod github;
pub mod gitlab;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::gitops::error::GitopsError;
use crate::http_limits::{human, read_capped, read_prefix, CappedReadError};

/// Which forge hosts the config repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
    Gitea,
    None,
}

impl ForgeKind {
    pub fn parse(s: &str) -> Option<ForgeKind> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Some(ForgeKind::Github),
            "gitlab" => Some(ForgeKind::Gitlab),
            "gitea" | "forgejo" => Some(ForgeKind::Gitea),
            "none" => Some(ForgeKind::None),
            _ => None,
        }
    }

    /// Guess from the repository URL's host.
    pub fn infer(repo_url: &str) -> ForgeKind {
        let host = host_of(repo_url).unwrap_or_default().to_ascii_lowercase();
        if host.contains("github") {
            ForgeKind::Github
        } else if host.contains("gitlab") {
            ForgeKind::Gitlab
        } else if host.contains("gitea") || host.contains("codeberg") || host.contains("forgejo") {
            ForgeKind::Gitea
        } else {
            ForgeKind::None
        }
    }

    /// The forge-specific token variable (RUNNER_GITOPS_TOKEN is checked first).
    pub fn token_env(self) -> &'static str {
        match self {
            ForgeKind::Github => "GITHUB_TOKEN",
            ForgeKind::Gitlab => "GITLAB_TOKEN",
            ForgeKind::Gitea => "GITEA_TOKEN",
            ForgeKind::None => "RUNNER_GITOPS_TOKEN",
        }
    }

    /// User name that goes with a token over git HTTPS.
    pub fn git_username(self) -> &'static str {
        match self {
            ForgeKind::Github | ForgeKind::None => "x-access-token",
            ForgeKind::Gitlab => "oauth2",
            ForgeKind::Gitea => "runner",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::Github => "GitHub",
            ForgeKind::Gitlab => "GitLab",
            ForgeKind::Gitea => "Gitea",
            ForgeKind::None => "none",
        }
    }
}

/// Host (with port) of a git URL: `https://h/…`, `git@h:…`, `ssh://git@h:22/…`.
pub fn host_of(url: &str) -> Option<String> {
    if let Some((_, rest)) = url.split_once("://") {
        let auth = rest.split('/').next()?;
        let auth = auth.rsplit('@').next()?;
        return Some(auth.to_string());
    }
    if let Some((user_host, _)) = url.split_once(':') {
        if let Some((_, host)) = user_host.split_once('@') {
            return Some(host.to_string());
        }
    }
    None
}

/// `(owner, repo)` of a GitHub- or Gitea-style repository URL (`.../owner/repo[.git]`).
pub(super) fn owner_and_repo(
    repo_url: &str,
    forge: &'static str,
) -> Result<(String, String), GitopsError> {
    let bad = || GitopsError::ForgeRepo {
        forge,
        url: crate::gitops::git::strip_userinfo(repo_url),
    };
    let path = repo_path_of(repo_url).ok_or_else(bad)?;
    let comps: Vec<&str> = path.rsplitn(3, '/').collect();
    match comps.as_slice() {
        [r, o, ..] => Ok((o.to_string(), r.to_string())),
        _ => Err(bad()),
    }
}

/// A pull request in the JSON GitHub and Gitea answer with (`number`, `html_url`).
pub(super) fn pr_from_json(v: &serde_json::Value) -> Option<PullRequest> {
    Some(PullRequest {
        number: v.get("number")?.as_u64()?,
        url: v
            .get("html_url")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Repository path on the forge (`owner/repo`, or `group/sub/project` on GitLab).
pub fn repo_path_of(url: &str) -> Option<String> {
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/').map(|(_, p)| p.to_string())?
    } else if let Some((uh, p)) = url.split_once(':') {
        if uh.contains('@') {
            p.to_string()
        } else {
            url.to_string()
        }
    } else {
        url.to_string()
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.len() < 2 {
        return None;
    }
    Some(comps.join("/"))
}

/// What to open.
#[derive(Debug, Clone, Serialize)]
pub struct PrSpec {
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// An open pull/merge request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// What [`open_or_update`] did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Created,
    Updated,
    /// Found open; nothing to change.
    Existing,
}

/// Result of a create call.
pub enum Created {
    Created(PullRequest),
    /// The forge says one is already open for this head/base.
    AlreadyExists,
}

/// The operations runner needs from a forge.
#[allow(async_fn_in_trait)]
pub trait Forge {
    async fn find_open_pr(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitopsError>;
    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError>;
    async fn update_pr(&self, number: u64, spec: &PrSpec) -> Result<PullRequest, GitopsError>;
    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitopsError>;
}

/// Update the open PR for `spec.head`, or create one.
pub async fn open_or_update<F: Forge>(
    forge: &F,
    spec: &PrSpec,
    update: bool,
) -> Result<(PullRequest, PrAction), GitopsError> {
    if let Some(pr) = forge.find_open_pr(&spec.head, &spec.base).await? {
        if !update {
            return Ok((pr, PrAction::Existing));
        }
        let pr = forge.update_pr(pr.number, spec).await?;
        return Ok((pr, PrAction::Updated));
    }
    match forge.create_pr(spec).await? {
        Created::Created(pr) => {
            if !spec.labels.is_empty() {
                forge.add_labels(pr.number, &spec.labels).await?;
            }
            Ok((pr, PrAction::Created))
        }
        Created::AlreadyExists => match forge.find_open_pr(&spec.head, &spec.base).await? {
            Some(pr) => {
                let pr = if update {
                    forge.update_pr(pr.number, spec).await?
                } else {
                    pr
                };
                Ok((pr, PrAction::Updated))
            }
            None => Err(GitopsError::ForgeApi {
                forge: "forge",
                method: "POST",
                path: "pull request".into(),
                status: 422,
                message: format!(
                    "a pull request for {} already exists but cannot be found",
                    spec.head
                ),
                hint: "; check that the token can read pull requests",
            }),
        },
    }
}

/// Any supported forge.
pub enum ForgeClient {
    Github(github::GitHub),
    Gitlab(gitlab::GitLab),
    Gitea(gitea::Gitea),
}

impl ForgeClient {
    /// Build the client for `kind`; `api_url` overrides the API base derived from the repo URL.
    pub fn new(
        kind: ForgeKind,
        repo_url: &str,
        api_url: Option<&str>,
        token: &crate::secrets::Secret,
    ) -> Result<Option<ForgeClient>, GitopsError> {
        Ok(match kind {
            ForgeKind::None => None,
            ForgeKind::Github => Some(ForgeClient::Github(github::GitHub::new(
                repo_url, api_url, token,
            )?)),
            ForgeKind::Gitlab => Some(ForgeClient::Gitlab(gitlab::GitLab::new(
                repo_url, api_url, token,
            )?)),
            ForgeKind::Gitea => Some(ForgeClient::Gitea(gitea::Gitea::new(
                repo_url, api_url, token,
            )?)),
        })
    }
}

impl Forge for ForgeClient {
    async fn find_open_pr(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitopsError> {
        match self {
            ForgeClient::Github(f) => f.find_open_pr(head, base).await,
            ForgeClient::Gitlab(f) => f.find_open_pr(head, base).await,
            ForgeClient::Gitea(f) => f.find_open_pr(head, base).await,
        }
    }
    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError> {
        match self {
            ForgeClient::Github(f) => f.create_pr(spec).await,
            ForgeClient::Gitlab(f) => f.create_pr(spec).await,
            ForgeClient::Gitea(f) => f.create_pr(spec).await,
        }
    }
    async fn update_pr(&self, number: u64, spec: &PrSpec) -> Result<PullRequest, GitopsError> {
        match self {
            ForgeClient::Github(f) => f.update_pr(number, spec).await,
            ForgeClient::Gitlab(f) => f.update_pr(number, spec).await,
            ForgeClient::Gitea(f) => f.update_pr(number, spec).await,
        }
    }
    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitopsError> {
        match self {
            ForgeClient::Github(f) => f.add_labels(number, labels).await,
            ForgeClient::Gitlab(f) => f.add_labels(number, labels).await,
            ForgeClient::Gitea(f) => f.add_labels(number, labels).await,
        }
    }
}

/// API base: `api_url` if it has a path, else `default_path` appended to it; without
/// `api_url`, `https://HOST` + `default_path` (GitHub.com: `https://api.github.com`).
pub fn api_base(repo_url: &str, api_url: Option<&str>, default_path: &str) -> Option<String> {
    if let Some(u) = api_url {
        let u = u.trim_end_matches('/');
        let has_path = u.split_once("://").is_some_and(|(_, r)| r.contains('/'));
        if has_path || u.contains("api.github.com") {
            return Some(u.to_string());
        }
        return Some(format!("{u}{default_path}"));
    }
    let host = host_of(repo_url)?;
    let host = host.split(':').next().unwrap_or(&host).to_string();
    if host == "github.com" {
        return Some("https://api.github.com".into());
    }
    Some(format!("https://{host}{default_path}"))
}

/// The most of a successful answer that is read (a pull-request list, a pull request).
pub const MAX_ANSWER: u64 = 8 << 20;
/// The most of an error answer that is read (to quote it in a message).
pub const MAX_ERROR_BODY: u64 = 64 << 10;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest silence while waiting for an answer or reading a body.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole of one request, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared HTTP plumbing. A forge is input like any other: its answers are read up to
/// [`MAX_ANSWER`] (error answers [`MAX_ERROR_BODY`]), within the timeouts above.
pub(crate) struct Http {
    pub forge: &'static str,
    pub base: String,
    pub client: reqwest::Client,
    /// Marked sensitive: never in reqwest's or our own debug output.
    pub auth_header: (&'static str, reqwest::header::HeaderValue),
}

impl Http {
    /// `auth` is the header's name, the text before the token (`"Bearer "`) and the token.
    pub fn new(
        forge: &'static str,
        base: String,
        auth: (&'static str, &str, &crate::secrets::Secret),
    ) -> Result<Http, GitopsError> {
        let (name, prefix, token) = auth;
        // The token's hand-off to the forge: into the one header that carries it.
        let value = crate::secrets::Secret::new(format!("{prefix}{}", token.expose()));
        let mut header = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
            GitopsError::ForgeHttp {
                forge,
                method: "-",
                path: base.clone(),
                message: "the token holds characters an HTTP header cannot carry (a newline?); check the token variable".into(),
            }
        })?;
        header.set_sensitive(true);
        let auth_header = (name, header);
        let client = reqwest::Client::builder()
            .user_agent(concat!("runner-gitops/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| GitopsError::ForgeHttp {
                forge,
                method: "-",
                path: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Http {
            forge,
            base,
            client,
            auth_header,
        })
    }

    /// Send and return (status, JSON body). Token never appears in errors.
    pub async fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        extra: &[(&str, &str)],
    ) -> Result<(u16, serde_json::Value), GitopsError> {
        let url = format!("{}{}", self.base, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut rb = self
            .client
            .request(m, &url)
            .header(self.auth_header.0, &self.auth_header.1);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let http_error = |message: String| GitopsError::ForgeHttp {
            forge: self.forge,
            method,
            path: path.to_string(),
            message,
        };
        let mut resp = rb
            .send()
            .await
            .map_err(|e| http_error(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = if status.is_success() {
            read_capped(&mut resp, MAX_ANSWER)
                .await
                .map_err(|e| match e {
                    CappedReadError::TooLarge => http_error(format!(
                        "the answer is larger than the limit of {} ({MAX_ANSWER} bytes); refusing to read it (a broken or hostile forge?)",
                        human(MAX_ANSWER)
                    )),
                    CappedReadError::Transfer(e) => http_error(format!(
                        "reading the answer failed: {}",
                        e.without_url()
                    )),
                })?
        } else {
            read_prefix(&mut resp, MAX_ERROR_BODY, REQUEST_TIMEOUT).await
        };
        let text = String::from_utf8_lossy(&bytes);
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| serde_json::Value::String(text.into_owned()));
        Ok((status.as_u16(), json))
    }

    pub fn api_error(
        &self,
        method: &'static str,
        path: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> GitopsError {
        let mut message = body
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .or_else(|| body.as_str().map(|s| s.chars().take(300).collect()))
            .unwrap_or_else(|| body.to_string().chars().take(300).collect());
        if let Some(errs) = body.get("errors") {
            message.push_str(&format!(" ({errs})"));
        }
        let hint = match status {
            401 => "; the token is missing, wrong or expired",
            403 => "; the token lacks permission (pull requests: write) or hit a rate limit",
            404 => "; check the repository path and --forge-url, and that the token can see the repository",
            _ => "",
        };
        GitopsError::ForgeApi {
            forge: self.forge,
            method,
            path: path.to_string(),
            status,
            message,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    //! GitLab and Gitea request shapes against a scripted loopback server (the strict
    //! GitHub stand-in lives in tests/it/forge_github.py).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    /// Serve `script` (method, path prefix) -> (status, body) in order; record requests.
    fn serve(script: Vec<(&'static str, &'static str, u16, &'static str)>) -> (String, Seen) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for (m, p, status, body) in script {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut len = 0;
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "private-token" | "authorization" => auth = v.trim().to_string(),
                        _ => {}
                    }
                }
                let mut b = vec![0; len];
                r.read_exact(&mut b).unwrap();
                let target = line.split_whitespace().nth(1).unwrap().to_string();
                let method = line.split_whitespace().next().unwrap().to_string();
                assert_eq!(method, m, "{target}");
                assert!(target.starts_with(p), "{target} vs {p}");
                seen2
                    .lock()
                    .unwrap()
                    .push((method, target, auth, String::from_utf8(b).unwrap()));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).unwrap();
            }
        });
        (addr, seen)
    }

    fn spec() -> PrSpec {
        PrSpec {
            head: "runner/bump/app-1".into(),
            base: "main".into(),
            title: "Bump".into(),
            body: "b".into(),
            labels: vec!["deploy".into()],
        }
    }

    #[tokio::test]
    async fn gitlab_conflict_is_looked_up_and_updated() {
        let (addr, seen) = serve(vec![
            (
                "GET",
                "/api/v4/projects/grp%2Fsub%2Fcfg/merge_requests?",
                200,
                "[]",
            ),
            (
                "POST",
                "/api/v4/projects/grp%2Fsub%2Fcfg/merge_requests",
                409,
                r#"{"message":["Another open merge request already exists for this source branch: !7"]}"#,
            ),
            (
                "GET",
                "/api/v4/projects/grp%2Fsub%2Fcfg/merge_requests?",
                200,
                r#"[{"iid":7,"web_url":"https://gl/x/-/merge_requests/7"}]"#,
            ),
            (
                "PUT",
                "/api/v4/projects/grp%2Fsub%2Fcfg/merge_requests/7",
                200,
                r#"{"iid":7,"web_url":"https://gl/x/-/merge_requests/7"}"#,
            ),
        ]);
        let f = ForgeClient::new(
            ForgeKind::Gitlab,
            "https://gitlab.example.com/grp/sub/cfg.git",
            Some(&addr),
            &"glpat-x".into(),
        )
        .unwrap()
        .unwrap();
        let (pr, action) = open_or_update(&f, &spec(), true).await.unwrap();
        assert_eq!((pr.number, action), (7, PrAction::Updated));
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].1.contains("source_branch=runner%2Fbump%2Fapp-1")
                && seen[0].1.contains("state=opened"),
            "{:?}",
            seen[0]
        );
        assert_eq!(seen[0].2, "glpat-x");
        assert!(
            seen[1]
                .3
                .contains("\"source_branch\":\"runner/bump/app-1\"")
                && seen[1].3.contains("\"labels\":\"deploy\"")
        );
    }

    #[tokio::test]
    async fn github_already_exists_race_is_success() {
        let (addr, seen) = serve(vec![
            ("GET", "/api/v3/repos/o/cfg/pulls?", 200, "[]"),
            (
                "POST",
                "/api/v3/repos/o/cfg/pulls",
                422,
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:runner/bump/app-1."}]}"#,
            ),
            (
                "GET",
                "/api/v3/repos/o/cfg/pulls?",
                200,
                r#"[{"number":9,"html_url":"https://ghe/o/cfg/pull/9"}]"#,
            ),
            (
                "PATCH",
                "/api/v3/repos/o/cfg/pulls/9",
                200,
                r#"{"number":9,"html_url":"https://ghe/o/cfg/pull/9"}"#,
            ),
        ]);
        let f = ForgeClient::new(
            ForgeKind::Github,
            "https://ghe.corp/o/cfg.git",
            Some(&addr),
            &"ghs_x".into(),
        )
        .unwrap()
        .unwrap();
        let (pr, action) = open_or_update(&f, &spec(), true).await.unwrap();
        assert_eq!((pr.number, action), (9, PrAction::Updated));
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].1.contains("head=o%3Arunner%2Fbump%2Fapp-1"),
            "{:?}",
            seen[0]
        );
        assert_eq!(seen[0].2, "Bearer ghs_x");
    }

    #[tokio::test]
    async fn gitea_creates_when_none_open() {
        let (addr, seen) = serve(vec![
            (
                "GET",
                "/api/v1/repos/org/cfg/pulls/main/runner/bump/app-1",
                404,
                r#"{"message":"not found"}"#,
            ),
            (
                "POST",
                "/api/v1/repos/org/cfg/pulls",
                201,
                r#"{"number":3,"html_url":"https://gitea/org/cfg/pulls/3"}"#,
            ),
        ]);
        let f = ForgeClient::new(
            ForgeKind::Gitea,
            "git@gitea.example.com:org/cfg.git",
            Some(&addr),
            &"tok".into(),
        )
        .unwrap()
        .unwrap();
        let (pr, action) = open_or_update(&f, &spec(), true).await.unwrap();
        assert_eq!((pr.number, action), (3, PrAction::Created));
        assert_eq!(seen.lock().unwrap()[1].2, "token tok");
    }

    #[test]
    fn urls() {
        assert_eq!(
            repo_path_of("https://github.com/o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_path_of("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_path_of("https://gitlab.com/a/b/c").as_deref(),
            Some("a/b/c")
        );
        assert_eq!(
            api_base("https://github.com/o/r", None, "/api/v3").as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            api_base("https://ghe.corp/o/r", None, "/api/v3").as_deref(),
            Some("https://ghe.corp/api/v3")
        );
        assert_eq!(
            api_base("x", Some("https://ghe.corp/api/v3/"), "/api/v3").as_deref(),
            Some("https://ghe.corp/api/v3")
        );
        assert_eq!(
            ForgeKind::infer("git@github.com:o/r.git"),
            ForgeKind::Github
        );
    }
}
