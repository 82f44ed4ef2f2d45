//! The build's AWS credentials endpoint seen from `run/`: the endpoint's URI and the
//! endpoint overrides join the plan's environment, the authorization token its secret
//! variables, so the token is exported over the shell's standard input (never the
//! container's `Env`, which `docker inspect` shows) and masked like the secrets.

use crate::build_credentials::{Session, FULL_URI_VAR};
use crate::plan::BuildPlan;

/// `plan` with the session's variables. The endpoint's URI and token replace any of the
/// same name (runner's endpoint is the build's credentials); an endpoint override the
/// buildspec or `--env` sets itself wins over runner's.
pub(super) fn plan_with(plan: &BuildPlan, session: &Session) -> BuildPlan {
    let mut plan = plan.clone();
    for (name, value) in session.env() {
        let set = plan.env.iter().any(|(n, _)| n == name)
            || plan.secret_env.iter().any(|(n, _)| n == name);
        if name == FULL_URI_VAR {
            plan.env.retain(|(n, _)| n != name);
            plan.secret_env.retain(|(n, _)| n != name);
        } else if set {
            continue;
        }
        plan.env.push((name.clone(), value.clone()));
    }
    for (name, value) in session.secret_env() {
        plan.env.retain(|(n, _)| n != name);
        plan.secret_env.retain(|(n, _)| n != name);
        plan.secret_env.push((name.clone(), value.clone()));
    }
    plan
}
