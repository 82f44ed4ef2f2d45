//! GitHub and GitHub Enterprise Server (`https://HOST/api/v3`) pull requests.
//! The token (PAT, fine-grained token or a pre-made GitHub App installation token) goes
//! in `Authorization: Bearer`.

use serde_json::json;

use super::{api_base, repo_path_of, Created, Forge, Http, PrSpec, PullRequest};
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

fn pr_of(v: &serde_json::Value) -> Option<PullRequest> {
    Some(PullRequest {
        number: v.get("number")?.as_u64()?,
        url: v
            .get("html_url")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

impl GitHub {
    pub fn new(repo_url: &str, api_url: Option<&str>, token: &str) -> Result<GitHub, GitopsError> {
        let bad = || GitopsError::ForgeRepo {
            forge: "GitHub",
            url: crate::gitops::git::strip_userinfo(repo_url),
        };
        let path = repo_path_of(repo_url).ok_or_else(bad)?;
        let comps: Vec<&str> = path.rsplitn(3, '/').collect();
        let (repo, owner) = match comps.as_slice() {
            [r, o, ..] => (r.to_string(), o.to_string()),
            _ => return Err(bad()),
        };
        let base = api_base(repo_url, api_url, "/api/v3").ok_or_else(bad)?;
        Ok(GitHub {
            http: Http::new("GitHub", base, ("Authorization", format!("Bearer {token}")))?,
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
        Ok(body.as_array().and_then(|a| a.first()).and_then(pr_of))
    }

    async fn create_pr(&self, spec: &PrSpec) -> Result<Created, GitopsError> {
        let path = self.pulls();
        let b = json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body, "maintainer_can_modify": true});
        let (status, body) = self.http.send("POST", &path, &[], Some(&b), EXTRA).await?;
        if status == 201 {
            return pr_of(&body)
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
            return pr_of(&body).ok_or_else(|| self.http.api_error("PATCH", &path, status, &body));
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
