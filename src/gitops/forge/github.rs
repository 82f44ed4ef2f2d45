//! GitHub and GitHub Enterprise Server (`https://HOST/api/v3`) pull requests.
//! The token (PAT, fine-grained token or a pre-made GitHub App installation token) goes
//! in `Authorization: Bearer`.

use serde_json::json;

use super::{api_base, owner_and_repo, pr_from_json, Created, Forge, Http, PrSpec, PullRequest};
use crate::gitops::error::GitopsError;

const EXTRA: &[(&str, &str)] = &[
    ("Accept", "application/vnd.github+json"),
    ("X-GitHub-Api-Version", "2022-11-28"),
];

pub struct GitHub {
    http: Http,
    owner: String,
    repo: String,
}

impl GitHub {
    pub fn new(
        repo_url: &str,
        api_url: Option<&str>,
        token: &crate::secrets::Secret,
    ) -> Result<GitHub, GitopsError> {
        let (owner, repo) = owner_and_repo(repo_url, "GitHub")?;
        let base =
            api_base(repo_url, api_url, "/api/v3").ok_or_else(|| GitopsError::ForgeRepo {
                forge: "GitHub",
                url: crate::gitops::git::strip_userinfo(repo_url),
            })?;
        Ok(GitHub {
            http: Http::new("GitHub", base, ("Authorization", "Bearer ", token))?,
            owner,
            repo,
        })
    }

    fn pulls(&self) -> String {
        format!("/repos/{}/{}/pulls", self.owner, self.repo)
    }
}

impl Forge for GitHub {
    async fn find_open_pr(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitopsError> {
        let path = self.pulls();
        let head_q = format!("{}:{head}", self.owner);
        let (status, body) = self
            .http
            .send(
                "GET",
                &path,
                &[("head", &head_q), ("base", base), ("state", "open")],
                None,
                EXTRA,
            )
            .await?;
        if status != 200 {
            return Err(self.http.api_error("GET", &path, status, &body));
        }
        Ok(body
            .as_array()
            .and_then(|a| a.first())
            .and_then(pr_from_json))
    }

    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError> {
        let path = self.pulls();
        let b = json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body, "maintainer_can_modify": true});
        let (status, body) = self.http.send("POST", &path, &[], Some(&b), EXTRA).await?;
        if status == 201 {
            return pr_from_json(&body)
                .map(Created::Created)
                .ok_or_else(|| self.http.api_error("POST", &path, status, &body));
        }
        if status == 422 && body.to_string().contains("already exists") {
            return Ok(Created::AlreadyExists);
        }
        Err(self.http.api_error("POST", &path, status, &body))
    }

    async fn update_pr(&self, number: u64, spec: &PrSpec) -> Result<PullRequest, GitopsError> {
        let path = format!("{}/{number}", self.pulls());
        let b = json!({"title": spec.title, "body": spec.body});
        let (status, body) = self.http.send("PATCH", &path, &[], Some(&b), EXTRA).await?;
        if status == 200 {
            return pr_from_json(&body)
                .ok_or_else(|| self.http.api_error("PATCH", &path, status, &body));
        }
        Err(self.http.api_error("PATCH", &path, status, &body))
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitopsError> {
        let path = format!("/repos/{}/{}/issues/{number}/labels", self.owner, self.repo);
        let b = json!({ "labels": labels });
        let (status, body) = self.http.send("POST", &path, &[], Some(&b), EXTRA).await?;
        if status == 200 {
            return Ok(());
        }
        Err(self.http.api_error("POST", &path, status, &body))
    }
}
