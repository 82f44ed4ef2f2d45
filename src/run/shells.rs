//! The build's shells: one long-lived shell per user for version 0.2 buildspecs (the
//! environment and working directory carried over when the user changes), the secrets
//! exported over standard input, and shell expansion of keys and names.

use super::ctx::Ctx;
use crate::docker::{BuildContainer, DockerError, DockerShell};
use crate::event::Level;
use crate::plan::BuildPlan;

/// The build shell and the user it runs as.
pub(super) struct OpenShell {
    pub(super) shell: DockerShell,
    pub(super) user: Option<String>,
    /// The value of CODEBUILD_BUILD_SUCCEEDING this shell has (set only when it changes).
    pub(super) succeeding: Option<&'static str>,
}

pub(super) struct Shells<'c> {
    pub(super) container: &'c BuildContainer,
    pub(super) current: Option<OpenShell>,
}

impl<'c> Shells<'c> {
    /// No shell open yet: the first command opens one.
    pub(super) fn new(container: &'c BuildContainer) -> Self {
        Self {
            container,
            current: None,
        }
    }

    /// Expands shell syntax (`$VAR`, `$(cmd)`) in `text` in the build shell.
    pub(super) async fn expand(
        &mut self,
        ctx: &Ctx<'_>,
        text: &str,
    ) -> Result<String, DockerError> {
        if !text.contains('$') && !text.contains('`') {
            return Ok(text.to_string());
        }
        let user = self
            .current
            .as_ref()
            .map(|s| s.user.clone())
            .unwrap_or_else(|| ctx.plan.run_as.clone());
        let shell = &mut self.for_user(ctx, user.as_deref()).await?.shell;
        let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
        let (_, value) = shell.capture(&format!("printf '%s' \"{quoted}\"")).await?;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    /// The version 0.2 shell for `user`, carrying the environment and working directory
    /// over from the previous shell when the user changes.
    pub(super) async fn for_user(
        &mut self,
        ctx: &Ctx<'_>,
        user: Option<&str>,
    ) -> Result<&mut OpenShell, DockerError> {
        let plan = ctx.plan;
        let reusable =
            matches!(&self.current, Some(s) if s.user.as_deref() == user && !s.shell.has_ended());
        if !reusable {
            let mut carried = None;
            if let Some(mut old) = self.current.take() {
                if old.shell.has_ended() {
                    ctx.notice(
                        Level::Warning,
                        "the build shell ended; starting a new one (variables set and \
                         directories entered earlier are lost)",
                    );
                } else {
                    carried = Some(snapshot(&mut old.shell).await?);
                    old.shell.close().await;
                }
            }
            let mut shell = self
                .container
                .open_shell(&plan.shell, user, &plan.env, &plan.src_dir)
                .await?;
            if let Some(u) = user {
                // An unknown user makes every command fail with 126 and no word why.
                let (code, _) = shell.capture("true").await?;
                if shell.has_ended() || code != 0 {
                    return Err(DockerError::RunAs(u.to_string()));
                }
            }
            // A fresh shell starts with the plan's CODEBUILD_BUILD_SUCCEEDING=1.
            let succeeding = if carried.is_none() { Some("1") } else { None };
            match carried {
                Some(state) => {
                    shell.capture(&state).await?;
                }
                None => inject_secrets(&mut shell, plan).await?,
            }
            self.current = Some(OpenShell {
                shell,
                user: user.map(str::to_string),
                succeeding,
            });
        }
        match self.current.as_mut() {
            Some(s) => Ok(s),
            None => Err(DockerError::Shell("no build shell".into())),
        }
    }
}

/// Exports the secret variables in a fresh shell, over its standard input: unlike the
/// engine's `Env`, nothing of it shows in `docker inspect`, and nothing is logged.
pub(super) async fn inject_secrets(
    shell: &mut DockerShell,
    plan: &BuildPlan,
) -> Result<(), DockerError> {
    if plan.secret_env.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for (name, value) in &plan.secret_env {
        let quoted = value.expose().replace('\'', "'\\''");
        script.push_str(&format!("export {name}='{quoted}'\n"));
    }
    let (code, _) = shell.capture(&script).await?;
    if code != 0 {
        return Err(DockerError::Shell(
            "could not set the secret variables in the build shell".into(),
        ));
    }
    Ok(())
}

/// A script that recreates `shell`'s exported variables and working directory.
async fn snapshot(shell: &mut DockerShell) -> Result<String, DockerError> {
    let (_, exports) = shell.capture("export -p").await?;
    let (_, pwd) = shell.capture("pwd").await?;
    let pwd = String::from_utf8_lossy(&pwd)
        .trim_end()
        .replace('\'', "'\\''");
    Ok(format!("{}\ncd '{pwd}'", String::from_utf8_lossy(&exports)))
}
