//! Gitea / Forgejo pull requests (`/api/v1`). Token in `Authorization: token …`.

use serde_json::json;

use super::{api_base, owner_and_repo, pr_from_json, Created, Forge, Http, PrSpec, PullRequest};
use crate::gitops::error::GitopsError;

pub struct Gitea {
    http: Http,
    owner: String,
    repo: String,
}

impl Gitea {
    pub fn new(
        repo_url: &str,
        api_url: Option<&str>,
        token: &crate::secrets::Secret,
    ) -> Result<Gitea, GitopsError> {
        let (owner, repo) = owner_and_repo(repo_url, "Gitea")?;
        let base =
            api_base(repo_url, api_url, "/api/v1").ok_or_else(|| GitopsError::ForgeRepo {
                forge: "Gitea",
                url: crate::gitops::git::strip_userinfo(repo_url),
            })?;
        Ok(Gitea {
            http: Http::new("Gitea", base, ("Authorization", "token ", token))?,
            owner,
            repo,
        })
    }

    fn pulls(&self) -> String {
        format!("/repos/{}/{}/pulls", self.owner, self.repo)
    }
}

impl Forge for Gitea {
    async fn find_open_pr(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitopsError> {
        // GET /repos/{owner}/{repo}/pulls/{base}/{head} returns the open PR for that pair.
        let path = format!("{}/{base}/{head}", self.pulls());
        let (status, body) = self.http.send("GET", &path, &[], None, &[]).await?;
        match status {
            200 => Ok(pr_from_json(&body)
                .filter(|_| body.get("state").and_then(|s| s.as_str()) != Some("closed"))),
            404 => Ok(None),
            _ => Err(self.http.api_error("GET", &path, status, &body)),
        }
    }

    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError> {
        let path = self.pulls();
        let b =
            json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body});
        let (status, body) = self.http.send("POST", &path, &[], Some(&b), &[]).await?;
        if status == 201 {
            return pr_from_json(&body)
                .map(Created::Created)
                .ok_or_else(|| self.http.api_error("POST", &path, status, &body));
        }
        if status == 409 || body.to_string().contains("already exists") {
            return Ok(Created::AlreadyExists);
        }
        Err(self.http.api_error("POST", &path, status, &body))
    }

    async fn update_pr(&self, number: u64, spec: &PrSpec) -> Result<PullRequest, GitopsError> {
        let path = format!("{}/{number}", self.pulls());
        let b = json!({"title": spec.title, "body": spec.body});
        let (status, body) = self.http.send("PATCH", &path, &[], Some(&b), &[]).await?;
        if status == 200 || status == 201 {
            return pr_from_json(&body)
                .ok_or_else(|| self.http.api_error("PATCH", &path, status, &body));
        }
        Err(self.http.api_error("PATCH", &path, status, &body))
    }

    async fn add_labels(&self, _number: u64, _labels: &[String]) -> Result<(), GitopsError> {
        // Gitea labels are set by numeric id; names would need a lookup. Not supported yet.
        Ok(())
    }
}
