//! The build settings `runner build` and `runner agent` share ([`BuildSettings`]), read
//! into a [`BuildRequest`] the same way for both.

use super::args::BuildSettings;
use super::config;
use crate::pipeline::{BuildRequest, Credentials};
use crate::publish::PublishError;
use crate::secrets::Secret;

/// Fills `req`'s image, secrets file, CA, cache, Docker, region and credentials
/// (registries, signing key, the build's AWS) from the flags and this process's
/// environment.
pub(super) fn apply(settings: BuildSettings, req: &mut BuildRequest) -> Result<(), PublishError> {
    req.credentials = Credentials {
        registry_endpoints: super::image::registry_endpoints(
            &settings.registry_endpoint,
            settings.registry_endpoints.as_deref(),
        )?,
        registry_auth: config::registry_auth(),
        registry_limits: super::image::registry_limits(settings.registry_timeout.as_deref())?,
        gitops_tokens: config::gitops_tokens(),
        aws: Default::default(),
        // --sign-key / RUNNER_SIGN_KEY points at the key from outside the source tree.
        sign_key: settings.sign_key,
        key_password: settings.password.key_password.map(Secret::new),
        // runner's own AWS secrets never reach a log.
        masked: config::own_masked_values(),
        // Served to builds only when asked for (--build-credentials runner / --build-role).
        build_aws: config::build_aws(settings.build_credentials, settings.build_role),
    };
    req.image = settings.image;
    req.secrets_file = settings.secrets_file;
    req.host_ca = settings.host_ca.into();
    req.cache = config::cache_choice(
        settings.no_cache,
        settings.cache_s3,
        settings.cache_dir,
        settings.cache_size,
    );
    req.cache_volumes = !settings.no_cache_volumes;
    req.privileged = settings.privileged;
    req.docker = settings.docker;
    req.region = settings.region;
    Ok(())
}
