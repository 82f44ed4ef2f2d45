//! GitLab merge requests (`/api/v4`). Token in `PRIVATE-TOKEN` (personal, project or
//! group access token).

use serde_json::json;

use super::{api_base, repo_path_of, Created, Forge, Http, PrSpec, PullRequest};
use crate::gitops::error::GitopsError;

pub struct GitLab {
    http: Http,
    /// URL-encoded project path (`group%2Fsub%2Fproject`).
    project: String,
}

fn mr_of(v: &serde_json::Value) -> Option<PullRequest> {
    Some(PullRequest {
        number: v.get("iid")?.as_u64()?,
        url: v
            .get("web_url")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

fn encode_path(p: &str) -> String {
    let mut o = String::new();
    for b in p.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

impl GitLab {
    pub fn new(
        repo_url: &str,
        api_url: Option<&str>,
        token: &crate::secrets::Secret,
    ) -> Result<GitLab, GitopsError> {
        let bad = || GitopsError::ForgeRepo {
            forge: "GitLab",
            url: crate::gitops::git::strip_userinfo(repo_url),
        };
        let path = repo_path_of(repo_url).ok_or_else(bad)?;
        let base = api_base(repo_url, api_url, "/api/v4").ok_or_else(bad)?;
        Ok(GitLab {
            http: Http::new("GitLab", base, ("PRIVATE-TOKEN", "", token))?,
            project: encode_path(&path),
        })
    }

    fn mrs(&self) -> String {
        format!("/projects/{}/merge_requests", self.project)
    }
}

impl Forge for GitLab {
    async fn find_open_pr(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitopsError> {
        let path = self.mrs();
        let (status, body) = self
            .http
            .send(
                "GET",
                &path,
                &[
                    ("source_branch", head),
                    ("target_branch", base),
                    ("state", "opened"),
                ],
                None,
                &[],
            )
            .await?;
        if status != 200 {
            return Err(self.http.api_error("GET", &path, status, &body));
        }
        Ok(body.as_array().and_then(|a| a.first()).and_then(mr_of))
    }

    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError> {
        let path = self.mrs();
        let b = json!({
            "source_branch": spec.head, "target_branch": spec.base, "title": spec.title,
            "description": spec.body, "labels": spec.labels.join(","), "remove_source_branch": true
        });
        let (status, body) = self.http.send("POST", &path, &[], Some(&b), &[]).await?;
        if status == 201 {
            return mr_of(&body)
                .map(Created::Created)
                .ok_or_else(|| self.http.api_error("POST", &path, status, &body));
        }
        if status == 409 || body.to_string().contains("already exists") {
            return Ok(Created::AlreadyExists);
        }
        Err(self.http.api_error("POST", &path, status, &body))
    }

    async fn update_pr(&self, number: u64, spec: &PrSpec) -> Result<PullRequest, GitopsError> {
        let path = format!("{}/{number}", self.mrs());
        let b = json!({"title": spec.title, "description": spec.body});
        let (status, body) = self.http.send("PUT", &path, &[], Some(&b), &[]).await?;
        if status == 200 {
            return mr_of(&body).ok_or_else(|| self.http.api_error("PUT", &path, status, &body));
        }
        Err(self.http.api_error("PUT", &path, status, &body))
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitopsError> {
        // Labels were sent with the create call; this adds them to an existing MR.
        let path = format!("{}/{number}", self.mrs());
        let b = json!({"add_labels": labels.join(",")});
        let (status, body) = self.http.send("PUT", &path, &[], Some(&b), &[]).await?;
        if status == 200 {
            return Ok(());
        }
        Err(self.http.api_error("PUT", &path, status, &body))
    }
}
