//! What a build may ask of the Docker engine through its gate (pure: no IO).
//!
//! An allowlist: a request is routed only when its method and path are known here;
//! anything else is refused with a 403 that says why. The proxy (`proxy.rs`) does the
//! IO the answers ask for: inspecting objects to check they are the build's own
//! (`Route::owned`, `Need`), creating a named volume a container asks for, and
//! forwarding what this module rebuilt (the canonical path, the re-encoded query, the
//! re-serialized body), so the engine sees exactly what was checked.

use bollard::models::{
    ContainerCreateBody, ExecConfig, MountType, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use std::collections::BTreeMap;

/// The label every object the gate creates carries, beside the build's
/// `io.runner.build-id`, `io.runner.owner` and `io.runner.project`; the dead-owner
/// sweep removes volumes and networks only when they carry it (never a cache volume).
pub const LABEL_GATE: &str = "io.runner.gate";

/// Oldest API version a build may speak: older ones accept settings on `start`
/// (a `HostConfig` body) that this policy never sees at create.
const MIN_API_MINOR: u32 = 25;

/// Who the build is, and the one host directory it may bind-mount.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub build_id: String,
    /// `host:pid` of the runner process (label `io.runner.owner`).
    pub owner: String,
    pub project: String,
    /// `(path in the build container, host directory)`: the build's source when it is
    /// bind-mounted (mount mode). `docker run -v $PWD:/src` names the container path;
    /// the engine is given the host directory.
    pub source: Option<(String, String)>,
    /// `(registry host, host:port)`: registries runner maps to another endpoint
    /// (`--registry-endpoint`); pushes, pulls and logins inside the build go there too.
    pub registries: Vec<(String, String)>,
}

impl Scope {
    /// The labels injected into every object the build creates.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (
                super::super::LABEL_BUILD_ID.to_string(),
                self.build_id.clone(),
            ),
            (super::super::LABEL_OWNER.to_string(), self.owner.clone()),
            (
                super::super::container::LABEL_PROJECT.to_string(),
                self.project.clone(),
            ),
            (LABEL_GATE.to_string(), self.build_id.clone()),
        ]
    }

    /// The `label` filter that selects the build's own objects: those it created
    /// through the gate (not its own build container, which a phase running as another
    /// user could otherwise exec into as root).
    pub fn label_filter(&self) -> String {
        format!("{LABEL_GATE}={}", self.build_id)
    }
}

/// A refusal: the reason is sent to the build as the engine's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Denied {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

fn deny<T>(reason: impl Into<String>) -> Result<T, Denied> {
    Err(Denied::new(reason))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Exec,
    Volume,
    Network,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Exec => "exec instance",
            Kind::Volume => "volume",
            Kind::Network => "network",
        }
    }
}

/// What the proxy must do with the request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Streamed to the engine unread (build contexts, archives, image tars).
    Stream,
    /// Dropped (the engine ignores it, older versions did not).
    Drop,
    CreateContainer,
    CreateVolume,
    CreateNetwork,
    CreateExec,
    NetworkConnect,
    /// `/auth` (docker login): the server address mapped (`Scope::registries`).
    Auth,
}

/// What the proxy must do with the request's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Keep,
    /// Add the build's label to `filters` (lists, events).
    LabelFilter,
    /// `/build`: no host network, no remote context, no cgroup parent.
    Build,
    /// `/images/create`: no import from a URL.
    ImageCreate,
    /// `/commit`: the `container` must be the build's own.
    Commit,
    /// `DELETE /images/{name}`: never forced.
    ImageDelete,
    /// `POST /images/{name}/tag`: the new name (`repo`) must not be runner's own.
    Tag,
}

/// Image names a build may not write (tag, build `-t`, commit, pull, import): runner's own
/// base and build images (`runner/…`). Every build on the engine starts from them, so a
/// build that could overwrite one would run its code in every later build of every
/// project, with their secrets.
pub fn reserved_image_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(&name);
    name.starts_with("runner/")
}

pub(super) fn refuse_reserved(name: &str, what: &str) -> Result<(), Denied> {
    if reserved_image_name(name) {
        return deny(format!(
            "{what} {name:?} is not allowed through runner's Docker gate: `runner/…` images \
             are runner's own base images, shared by every build on this engine; use a name \
             of your own"
        ));
    }
    Ok(())
}

/// A request the policy lets through, with what is left to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/v1.41` or empty, as the build sent it.
    pub version: String,
    /// The canonical path's segments (decoded).
    pub segments: Vec<String>,
    /// `(kind, index in segments)`: objects that must be the build's own; the proxy
    /// replaces each segment with the object's full id before forwarding.
    pub owned: Vec<(Kind, usize)>,
    pub body: Body,
    pub query: Query,
    /// A hijacked or upgraded stream (attach, exec start, BuildKit sessions).
    pub upgrade: bool,
    /// BuildKit's gRPC API (`/grpc`): the upgraded stream is HTTP/2, served call by call
    /// through `buildkit::route` and `buildkit::check_solve`, never copied as bytes.
    pub grpc: bool,
}

impl Route {
    fn new(version: String, segments: Vec<String>) -> Self {
        Self {
            version,
            segments,
            owned: Vec::new(),
            body: Body::Stream,
            query: Query::Keep,
            upgrade: false,
            grpc: false,
        }
    }

    /// The path to forward: the version prefix and the segments, each percent-encoded.
    pub fn path(&self) -> String {
        let mut p = self.version.clone();
        for s in &self.segments {
            p.push('/');
            p.push_str(&encode_segment(s));
        }
        p
    }
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_segment(s: &str) -> Result<String, Denied> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return deny("the request path has a malformed percent-encoding"),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| Denied::new("the request path is not UTF-8"))?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return deny("the request path has an empty, `.`, `..` or encoded-slash segment");
    }
    Ok(s)
}

/// Splits `/v1.41/containers/x/json` into the version prefix and decoded segments.
fn split_path(path: &str) -> Result<(String, Vec<String>), Denied> {
    let Some(rest) = path.strip_prefix('/') else {
        return deny("the request path must start with /");
    };
    let mut raw: Vec<&str> = rest.split('/').collect();
    if raw.last() == Some(&"") && raw.len() > 1 {
        raw.pop();
    }
    let mut version = String::new();
    if let Some(first) = raw.first() {
        if let Some(v) = first.strip_prefix('v') {
            if let Some((major, minor)) = v.split_once('.') {
                let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
                    return deny(format!("unknown API version {first:?}"));
                };
                if major != 1 || minor < MIN_API_MINOR {
                    return deny(format!(
                        "API version {major}.{minor} is not served through runner's Docker \
                         gate: use 1.{MIN_API_MINOR} or newer (any current docker client)"
                    ));
                }
                version = format!("/v{major}.{minor}");
                raw.remove(0);
            }
        }
    }
    let segments = raw
        .into_iter()
        .map(decode_segment)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((version, segments))
}

/// The allowlist: which endpoint this is and what is left to check before forwarding.
pub fn route(method: &str, path: &str) -> Result<Route, Denied> {
    let (version, segs) = split_path(path)?;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut r = Route::new(version, segs.clone());
    let get = method == "GET" || method == "HEAD";
    let ok = match (method, s.as_slice()) {
        (_, ["_ping"]) if get => true,
        ("GET", ["version"]) | ("GET", ["info"]) => true,
        ("POST", ["auth"]) => {
            r.body = Body::Auth;
            true
        }
        ("GET", ["events"]) => {
            r.query = Query::LabelFilter;
            true
        }
        // Containers.
        ("GET", ["containers", "json"]) => {
            r.query = Query::LabelFilter;
            true
        }
        ("POST", ["containers", "create"]) => {
            r.body = Body::CreateContainer;
            true
        }
        (_, ["containers", _id, rest @ ..]) => {
            r.owned.push((Kind::Container, 1));
            container_op(method, rest, &mut r)
        }
        // Exec instances: checked through the container they belong to.
        ("POST", ["exec", _, "start"]) => {
            r.owned.push((Kind::Exec, 1));
            r.upgrade = true;
            true
        }
        ("POST", ["exec", _, "resize"]) | ("GET", ["exec", _, "json"]) => {
            r.owned.push((Kind::Exec, 1));
            true
        }
        // Volumes.
        ("GET", ["volumes"]) => {
            r.query = Query::LabelFilter;
            true
        }
        ("POST", ["volumes", "create"]) => {
            r.body = Body::CreateVolume;
            true
        }
        ("GET", ["volumes", _]) | ("DELETE", ["volumes", _]) => {
            r.owned.push((Kind::Volume, 1));
            true
        }
        // Networks.
        ("GET", ["networks"]) => {
            r.query = Query::LabelFilter;
            true
        }
        ("POST", ["networks", "create"]) => {
            r.body = Body::CreateNetwork;
            true
        }
        ("GET", ["networks", _]) | ("DELETE", ["networks", _]) => {
            r.owned.push((Kind::Network, 1));
            true
        }
        ("POST", ["networks", _, "connect" | "disconnect"]) => {
            r.owned.push((Kind::Network, 1));
            r.body = Body::NetworkConnect;
            true
        }
        // Images are shared by every build (that is the layer cache): reading, building,
        // pulling, pushing, tagging, saving and loading them is allowed; removing them is
        // not (another build's, or the base image of every build, could go).
        ("POST", ["build"]) => {
            r.query = Query::Build;
            true
        }
        // BuildKit's session: the engine calls the client's services (files, secrets,
        // registry credentials the client holds).
        ("POST", ["session"]) => {
            r.upgrade = true;
            true
        }
        // BuildKit's control API: the client calls the engine's, checked call by call.
        ("POST", ["grpc"]) => {
            r.upgrade = true;
            r.grpc = true;
            true
        }
        ("POST", ["images", "create"]) => {
            r.query = Query::ImageCreate;
            true
        }
        // An archive names its own tags (inside the tar, after its layers), which could
        // overwrite runner's base images; refused rather than parsed in flight.
        ("POST", ["images", "load"]) => {
            return deny(
                "docker load is not allowed through runner's Docker gate: the archive's tags \
                 could overwrite images other builds start from; push the image to a registry \
                 and pull it, or use `docker build --cache-from`",
            )
        }
        ("GET", ["images", "json" | "search" | "get"]) => true,
        (_, ["images", .., last]) if get && matches!(*last, "json" | "history" | "get") => {
            s.len() >= 3
        }
        ("POST", ["images", _, ..]) if s.last() == Some(&"tag") && s.len() >= 3 => {
            r.query = Query::Tag;
            true
        }
        ("POST", ["images", _, ..]) if s.last() == Some(&"push") => s.len() >= 3,
        ("GET", ["distribution", .., "json"]) if s.len() >= 3 => true,
        ("POST", ["commit"]) => {
            r.query = Query::Commit;
            true
        }
        // Untagging a name (`docker rmi app:1`) takes nothing a build could not already
        // do with `docker tag`; removing by id or by force could take another build's
        // image out from under it, and runner's base images are left alone.
        ("DELETE", ["images", name @ ..]) => {
            let reference = name.join("/");
            if reference.starts_with("runner/") || reference.starts_with("sha256:") || {
                let hex = reference.chars().all(|c| c.is_ascii_hexdigit());
                hex && reference.len() >= 12
            } {
                return deny(format!(
                    "removing image {reference:?} is not allowed through runner's Docker gate: \
                     images are shared by every build on this engine (the layer cache); a \
                     build may untag the names it uses (`docker rmi NAME:TAG`), the host's \
                     owner prunes the rest (`docker image prune`)"
                ));
            }
            r.query = Query::ImageDelete;
            true
        }
        (_, [kind, "prune"]) => {
            return deny(format!(
                "pruning {kind} is not allowed through runner's Docker gate: it would reach \
                 other builds' objects; what this build creates (except images) is removed \
                 when it ends"
            ))
        }
        _ => false,
    };
    if ok {
        Ok(r)
    } else {
        deny(format!(
            "{method} {path} is not allowed through runner's Docker gate (it serves a build \
             its own containers, volumes, networks and execs, and images); run the build with \
             `--docker privileged` for a Docker daemon of its own"
        ))
    }
}

fn container_op(method: &str, rest: &[&str], r: &mut Route) -> bool {
    match (method, rest) {
        ("GET", ["json" | "top" | "logs" | "changes" | "export" | "stats"]) => true,
        ("HEAD" | "GET", ["archive"]) => true,
        ("PUT", ["archive"]) => true,
        ("POST", ["start"]) => {
            r.body = Body::Drop;
            true
        }
        (
            "POST",
            ["stop" | "restart" | "kill" | "pause" | "unpause" | "wait" | "resize" | "rename"
            | "update"],
        ) => true,
        ("POST", ["attach"]) => {
            r.upgrade = true;
            true
        }
        ("GET", ["attach", "ws"]) => {
            r.upgrade = true;
            true
        }
        ("POST", ["exec"]) => {
            r.body = Body::CreateExec;
            true
        }
        ("DELETE", []) => true,
        _ => false,
    }
}

/// `k=v` pairs of a query, decoded.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// What the proxy must find out before forwarding a request whose body or query names
/// other objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The object must exist and be the build's own.
    Own(Kind, String),
    /// A named volume a container mounts: the build's own, or created now with the
    /// build's labels (the engine would otherwise create it unlabelled).
    OwnOrNewVolume(String),
    /// A volume about to be created: no such volume yet, or the build's own (creating
    /// an existing volume answers with it, another build's included).
    OwnOrNoVolume(String),
}

/// A query's `(name, value)` pairs, in order.
pub type Pairs = Vec<(String, String)>;

/// Checks and rewrites a query. Returns the pairs to forward and what must be checked.
pub fn check_query(
    rule: Query,
    pairs: Vec<(String, String)>,
    scope: &Scope,
) -> Result<(Pairs, Vec<Need>), Denied> {
    let mut needs = Vec::new();
    match rule {
        Query::Keep => Ok((pairs, needs)),
        Query::LabelFilter => {
            let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut out = Vec::new();
            for (k, v) in pairs {
                if k == "filters" {
                    for (fk, fv) in parse_filters(&v)? {
                        filters.entry(fk).or_default().extend(fv);
                    }
                } else {
                    out.push((k, v));
                }
            }
            filters
                .entry("label".to_string())
                .or_default()
                .push(scope.label_filter());
            let json = serde_json::to_string(&filters)
                .map_err(|e| Denied::new(format!("cannot encode filters: {e}")))?;
            out.push(("filters".to_string(), json));
            Ok((out, needs))
        }
        Query::Build => {
            for (k, v) in &pairs {
                match k.as_str() {
                    "networkmode" if !matches!(v.as_str(), "" | "default" | "bridge" | "none") => {
                        return deny(format!(
                            "docker build --network {v} is not allowed through runner's \
                             Docker gate (only the default bridge network or none)"
                        ));
                    }
                    "remote" if !v.is_empty() => {
                        return deny(
                            "a remote build context (URL or git repository) is not allowed \
                             through runner's Docker gate: the engine would fetch it from the \
                             host's network; clone or download it inside the build and build \
                             the directory",
                        )
                    }
                    "cgroupparent" if !v.is_empty() => {
                        return deny("docker build --cgroup-parent is not allowed")
                    }
                    "isolation" if !matches!(v.as_str(), "" | "default") => {
                        return deny("docker build --isolation is not allowed")
                    }
                    "t" => refuse_reserved(v, "docker build -t")?,
                    // BuildKit through the classic endpoint (`version=2`): the exporter
                    // names its image itself.
                    "outputs" => check_build_outputs(v)?,
                    _ => {}
                }
            }
            Ok((pairs, needs))
        }
        Query::Tag => {
            for (k, v) in &pairs {
                if k == "repo" {
                    refuse_reserved(v, "docker tag to")?;
                }
            }
            Ok((pairs, needs))
        }
        Query::ImageDelete => Ok((
            pairs
                .into_iter()
                .filter(|(k, _)| k != "force")
                .chain([("force".to_string(), "false".to_string())])
                .collect(),
            needs,
        )),
        Query::ImageCreate => {
            for (k, v) in &pairs {
                if matches!(k.as_str(), "fromImage" | "repo") {
                    refuse_reserved(v, "writing the image name")?;
                }
                if k == "fromSrc" && v != "-" {
                    return deny(
                        "importing an image from a URL is not allowed through runner's Docker \
                         gate: the engine would fetch it from the host's network; download it \
                         inside the build and `docker import` the file",
                    );
                }
            }
            Ok((pairs, needs))
        }
        Query::Commit => {
            let container = pairs
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            if container.is_empty() {
                return deny("docker commit needs a container");
            }
            for (k, v) in &pairs {
                if k == "repo" {
                    refuse_reserved(v, "docker commit to")?;
                }
            }
            needs.push(Need::Own(Kind::Container, container));
            Ok((pairs, needs))
        }
    }
}

/// `/build`'s `outputs` (BuildKit, `version=2`): `[{"Type": "moby", "Attrs": {"name":
/// "app:1"}}]`. The image names an exporter writes must not be runner's own.
fn check_build_outputs(json: &str) -> Result<(), Denied> {
    if json.trim().is_empty() {
        return Ok(());
    }
    let outputs: Vec<BuildOutput> = serde_json::from_str(json)
        .map_err(|e| Denied::new(format!("docker build's outputs are not understood: {e}")))?;
    for o in outputs {
        for (k, v) in &o.attrs {
            if matches!(k.as_str(), "name" | "dangling-name-prefix") {
                for name in v.split(',') {
                    refuse_reserved(
                        name.trim().trim_matches(|c| c == '"' || c == '\''),
                        "the BuildKit output image name (docker build --output name=)",
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// One of `/build`'s `outputs` (the engine's `BuildOutput`). Go's JSON decoding matches
/// keys case-insensitively and merges repeated ones, so other spellings are refused
/// (unknown fields) and so are repeated keys (duplicate fields).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildOutput {
    #[serde(rename = "Type", alias = "type", default)]
    _typ: String,
    #[serde(rename = "Attrs", alias = "attrs", default)]
    attrs: BTreeMap<String, String>,
}

/// `filters` in either of the engine's formats: `{"k":["v"]}` or `{"k":{"v":true}}`.
fn parse_filters(json: &str) -> Result<BTreeMap<String, Vec<String>>, Denied> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Denied::new(format!("bad filters: {e}")))?;
    let serde_json::Value::Object(map) = v else {
        return deny("bad filters: not an object");
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let values = match v {
            serde_json::Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => Ok(s),
                    _ => deny("bad filters: values must be strings"),
                })
                .collect::<Result<Vec<_>, _>>()?,
            serde_json::Value::Object(o) => o.into_iter().map(|(k, _)| k).collect(),
            _ => return deny("bad filters: values must be lists"),
        };
        out.insert(k, values);
    }
    Ok(out)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Denied> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_str("{}")
            .map_err(|e| Denied::new(format!("the {what} request has no body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| Denied::new(format!("the {what} request's JSON is not understood: {e}")))
}

fn to_body<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Denied> {
    serde_json::to_vec(v).map_err(|e| Denied::new(format!("cannot encode the request: {e}")))
}

fn add_labels(labels: &mut Option<std::collections::HashMap<String, String>>, scope: &Scope) {
    let map = labels.get_or_insert_with(Default::default);
    for (k, v) in scope.labels() {
        map.insert(k, v);
    }
}

/// `host` / `container:<x>` style modes: `container:` must name the build's own.
fn check_mode(
    what: &str,
    flag: &str,
    value: Option<&str>,
    allowed: &[&str],
    needs: &mut Vec<Need>,
) -> Result<(), Denied> {
    let Some(v) = value else { return Ok(()) };
    if let Some(other) = v.strip_prefix("container:") {
        needs.push(Need::Own(Kind::Container, other.to_string()));
        return Ok(());
    }
    if allowed.contains(&v) {
        return Ok(());
    }
    deny(format!(
        "{what} {v:?} ({flag}) is not allowed through runner's Docker gate"
    ))
}

/// Normalizes an absolute path lexically (`.` and `..` resolved, no trailing slash).
fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The host directory an absolute bind source in the build container stands for.
/// Only the build's source directory itself: a subdirectory is a path the build controls
/// (it could swap a component for a link to `/` between the check and the engine's
/// mount), so it is refused with the way around it.
fn translate_bind(source: &str, scope: &Scope) -> Result<String, Denied> {
    let Some(norm) = normalize(source) else {
        return deny(format!(
            "bind mount source {source:?} is not an absolute path or a volume name"
        ));
    };
    if let Some((container_dir, host_dir)) = &scope.source {
        let cdir = normalize(container_dir).unwrap_or_default();
        let hdir = normalize(host_dir).unwrap_or_default();
        if norm == cdir || norm == hdir {
            return Ok(host_dir.clone());
        }
        if norm.starts_with(&format!("{cdir}/")) || norm.starts_with(&format!("{hdir}/")) {
            return deny(format!(
                "bind-mounting {source:?} is not allowed through runner's Docker gate: only the \
                 build's source directory itself ({cdir}) can be bind-mounted; mount it and set \
                 the working directory instead (`-v {cdir}:/src -w /src/<subdirectory>`)"
            ));
        }
    }
    deny(format!(
        "bind-mounting {source:?} is not allowed through runner's Docker gate: a build may \
         bind-mount only its source directory ({}) and use its own named volumes",
        scope
            .source
            .as_ref()
            .map(|(c, _)| c.as_str())
            .unwrap_or("none: the source is copied, not mounted")
    ))
}

/// Names of runner's own objects (`runner-…`: build containers, cache volumes) are not
/// for a build to take: a build could otherwise squat the name of another build's
/// container or cache volume before that build creates it.
pub fn check_name(name: &str) -> Result<(), Denied> {
    let n = name.trim_start_matches('/');
    if n.starts_with("runner-") || n.starts_with("runner_") {
        return deny(format!(
            "the name {name:?} is reserved for runner's own containers and volumes; \
             choose another name"
        ));
    }
    Ok(())
}

fn is_volume_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `docker run -v SRC:DST[:opts]` entries.
fn check_bind(bind: &str, scope: &Scope, needs: &mut Vec<Need>) -> Result<String, Denied> {
    let mut parts = bind.splitn(2, ':');
    let src = parts.next().unwrap_or_default();
    let rest = parts.next();
    let Some(rest) = rest else {
        // A bare container path: an anonymous volume.
        return Ok(bind.to_string());
    };
    if is_volume_name(src) {
        check_name(src)?;
        needs.push(Need::OwnOrNewVolume(src.to_string()));
        return Ok(bind.to_string());
    }
    let host = translate_bind(src, scope)?;
    Ok(format!("{host}:{rest}"))
}

/// Checks a container's create request and returns the body to forward (labels
/// injected, bind sources translated) and the objects it names.
pub fn check_container_create(body: &[u8], scope: &Scope) -> Result<(Vec<u8>, Vec<Need>), Denied> {
    let mut c: ContainerCreateBody = parse_body(body, "container create")?;
    let mut needs = Vec::new();
    add_labels(&mut c.labels, scope);
    if let Some(h) = c.host_config.as_mut() {
        let refuse = |flag: &str| -> Result<(), Denied> {
            deny(format!(
                "{flag} is not allowed through runner's Docker gate: a build's containers get \
                 no more privilege than the build itself (use `--docker privileged` on a host \
                 that allows privileged containers for a Docker daemon inside the build)"
            ))
        };
        if h.privileged == Some(true) {
            refuse("--privileged")?;
        }
        if h.cap_add.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--cap-add")?;
        }
        if h.devices.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--device")?;
        }
        if h.device_requests.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--gpus / device requests")?;
        }
        if h.device_cgroup_rules
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            refuse("--device-cgroup-rule")?;
        }
        if let Some(opts) = &h.security_opt {
            for o in opts {
                if !matches!(
                    o.as_str(),
                    "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
                ) {
                    refuse(&format!("--security-opt {o}"))?;
                }
            }
        }
        if h.cgroup_parent.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--cgroup-parent")?;
        }
        if h.cgroup.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--cgroup")?;
        }
        if matches!(
            h.cgroupns_mode,
            Some(bollard::models::HostConfigCgroupnsModeEnum::HOST)
        ) {
            refuse("--cgroupns host")?;
        }
        if h.sysctls.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--sysctl")?;
        }
        if h.masked_paths.is_some() || h.readonly_paths.is_some() {
            refuse("--security-opt systempaths (masked or read-only paths)")?;
        }
        if h.runtime.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--runtime")?;
        }
        if h.volume_driver.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--volume-driver")?;
        }
        if h.storage_opt.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("--storage-opt")?;
        }
        if h.container_id_file.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse("a container id file")?;
        }
        if let Some(log) = &h.log_config {
            // Other drivers (syslog, fluentd, gelf, splunk, awslogs…) make the engine
            // connect to an address of the build's choosing from the host's network.
            if !matches!(
                log.typ.as_deref(),
                None | Some("" | "json-file" | "local" | "none")
            ) {
                refuse(&format!(
                    "--log-driver {}",
                    log.typ.as_deref().unwrap_or_default()
                ))?;
            }
        }
        if h.oom_kill_disable == Some(true) {
            refuse("--oom-kill-disable")?;
        }
        match h.network_mode.as_deref() {
            None | Some("" | "default" | "bridge" | "none") => {}
            Some(net) if net.starts_with("container:") => {
                check_mode("network mode", "--network", Some(net), &[], &mut needs)?
            }
            Some("host") => refuse("--network host")?,
            // A user-defined network by name or id: the build's own.
            Some(net) => needs.push(Need::Own(Kind::Network, net.to_string())),
        }
        check_mode(
            "PID mode",
            "--pid",
            h.pid_mode.as_deref(),
            &["", "private"],
            &mut needs,
        )?;
        check_mode(
            "IPC mode",
            "--ipc",
            h.ipc_mode.as_deref(),
            &["", "private", "shareable", "none"],
            &mut needs,
        )?;
        if h.uts_mode.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse(&format!("--uts {}", h.uts_mode.as_deref().unwrap_or("")))?;
        }
        if h.userns_mode.as_ref().is_some_and(|v| !v.is_empty()) {
            refuse(&format!(
                "--userns {}",
                h.userns_mode.as_deref().unwrap_or("")
            ))?;
        }
        if let Some(from) = &h.volumes_from {
            for f in from {
                let name = f.split(':').next().unwrap_or_default();
                needs.push(Need::Own(Kind::Container, name.to_string()));
            }
        }
        if let Some(links) = &h.links {
            for l in links {
                let name = l.split(':').next().unwrap_or_default();
                needs.push(Need::Own(
                    Kind::Container,
                    name.trim_start_matches('/').to_string(),
                ));
            }
        }
        if let Some(binds) = h.binds.take() {
            let mut out = Vec::with_capacity(binds.len());
            for b in binds {
                out.push(check_bind(&b, scope, &mut needs)?);
            }
            h.binds = Some(out);
        }
        if let Some(mounts) = h.mounts.as_mut() {
            for m in mounts.iter_mut() {
                match m.typ {
                    Some(MountType::BIND) => {
                        let src = m.source.clone().unwrap_or_default();
                        m.source = Some(translate_bind(&src, scope)?);
                    }
                    Some(MountType::VOLUME) | None => {
                        if let Some(vo) = m.volume_options.as_mut() {
                            if vo.driver_config.is_some() {
                                refuse("a volume mount with a driver configuration")?;
                            }
                            if vo.subpath.is_some() {
                                refuse("a volume mount's subpath")?;
                            }
                            add_labels(&mut vo.labels, scope);
                        }
                        match m.source.as_deref() {
                            None | Some("") => {}
                            Some(name) if is_volume_name(name) => {
                                check_name(name)?;
                                needs.push(Need::OwnOrNewVolume(name.to_string()))
                            }
                            Some(other) => {
                                return deny(format!("{other:?} is not a volume name"));
                            }
                        }
                    }
                    Some(MountType::TMPFS) => {}
                    Some(other) => refuse(&format!("a {other:?} mount"))?,
                }
            }
        }
    }
    if let Some(nc) = &c.networking_config {
        if let Some(eps) = &nc.endpoints_config {
            for name in eps.keys() {
                match name.as_str() {
                    "bridge" | "default" | "none" => {}
                    "host" => {
                        return deny("--network host is not allowed through runner's Docker gate")
                    }
                    n => needs.push(Need::Own(Kind::Network, n.to_string())),
                }
            }
        }
    }
    Ok((to_body(&c)?, needs))
}

pub fn check_volume_create(body: &[u8], scope: &Scope) -> Result<(Vec<u8>, Vec<Need>), Denied> {
    let mut v: VolumeCreateRequest = parse_body(body, "volume create")?;
    check_name(v.name.as_deref().unwrap_or(""))?;
    let needs = match v.name.as_deref() {
        Some(n) if !n.is_empty() => vec![Need::OwnOrNoVolume(n.to_string())],
        _ => vec![],
    };
    if !matches!(v.driver.as_deref(), None | Some("") | Some("local")) {
        return deny("only the local volume driver is allowed through runner's Docker gate");
    }
    if v.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return deny(
            "volume driver options (--opt) are not allowed through runner's Docker gate: \
             `--opt type=none --opt o=bind --opt device=/` would mount a host path",
        );
    }
    if v.cluster_volume_spec.is_some() {
        return deny("cluster volumes are not allowed through runner's Docker gate");
    }
    add_labels(&mut v.labels, scope);
    Ok((to_body(&v)?, needs))
}

pub fn check_network_create(body: &[u8], scope: &Scope) -> Result<Vec<u8>, Denied> {
    let mut n: NetworkCreateRequest = parse_body(body, "network create")?;
    check_name(&n.name)?;
    if !matches!(n.driver.as_deref(), None | Some("") | Some("bridge")) {
        return deny("only bridge networks are allowed through runner's Docker gate");
    }
    if n.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return deny(
            "network driver options (--opt) are not allowed through runner's Docker gate \
             (they can attach to the host's bridges)",
        );
    }
    if n.config_from.is_some() || n.config_only == Some(true) || n.ingress == Some(true) {
        return deny("config-only, config-from and ingress networks are not allowed");
    }
    if !matches!(n.scope.as_deref(), None | Some("") | Some("local")) {
        return deny("only local networks are allowed through runner's Docker gate");
    }
    if let Some(ipam) = &n.ipam {
        if !matches!(ipam.driver.as_deref(), None | Some("") | Some("default"))
            || ipam.options.as_ref().is_some_and(|o| !o.is_empty())
        {
            return deny("only the default IPAM driver without options is allowed");
        }
    }
    add_labels(&mut n.labels, scope);
    to_body(&n)
}

pub fn check_exec_create(body: &[u8]) -> Result<Vec<u8>, Denied> {
    let e: ExecConfig = parse_body(body, "exec create")?;
    if e.privileged == Some(true) {
        return deny("docker exec --privileged is not allowed through runner's Docker gate");
    }
    to_body(&e)
}

/// `connect`/`disconnect`: the container named must be the build's own.
pub fn check_network_connect(body: &[u8]) -> Result<(Vec<u8>, Vec<Need>), Denied> {
    let v: serde_json::Value = parse_body(body, "network connect")?;
    let container = v
        .get("Container")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    if container.is_empty() {
        return deny("network connect/disconnect needs a container");
    }
    // Forwarded as parsed into the typed request where possible (the typed one has the
    // only fields the engine reads); disconnect has `Force` instead of `EndpointConfig`.
    let body = match serde_json::from_value::<NetworkConnectRequest>(v.clone()) {
        Ok(req) if v.get("Force").is_none() => to_body(&req)?,
        _ => {
            let mut out = serde_json::Map::new();
            out.insert(
                "Container".into(),
                serde_json::Value::String(container.clone()),
            );
            if let Some(f) = v.get("Force").and_then(|f| f.as_bool()) {
                out.insert("Force".into(), serde_json::Value::Bool(f));
            }
            to_body(&out)?
        }
    };
    Ok((body, vec![Need::Own(Kind::Container, container)]))
}

/// `host:port` of a `--registry-endpoint` URL (`http://127.0.0.1:5000` → `127.0.0.1:5000`).
pub fn endpoint_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let host = rest.split('/').next().unwrap_or_default();
    (!host.is_empty()).then(|| host.to_string())
}

/// The repository `repo` (`HOST/path`) names when its registry is mapped.
pub fn map_repository(repo: &str, scope: &Scope) -> Option<String> {
    let (first, rest) = repo.split_once('/')?;
    scope
        .registries
        .iter()
        .find(|(h, _)| h == first)
        .map(|(_, to)| format!("{to}/{rest}"))
}

/// `docker login HOST`: the server address the engine checks, mapped.
pub fn check_auth(body: &[u8], scope: &Scope) -> Result<Vec<u8>, Denied> {
    let mut v: serde_json::Value = parse_body(body, "login")?;
    if let Some(addr) = v.get("serveraddress").and_then(|a| a.as_str()) {
        let host = endpoint_host(addr).unwrap_or_default();
        if let Some((_, to)) = scope.registries.iter().find(|(h, _)| *h == host) {
            v["serveraddress"] = serde_json::Value::String(to.clone());
        }
    }
    to_body(&v)
}

/// Splits `repo:tag` (a tag after the last `/`) into the repository and the tag.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// Whether the labels of an inspected object make it the build's own (created through
/// its gate).
pub fn is_own(labels: Option<&serde_json::Map<String, serde_json::Value>>, scope: &Scope) -> bool {
    labels
        .and_then(|l| l.get(LABEL_GATE))
        .and_then(|v| v.as_str())
        == Some(scope.build_id.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            build_id: "b1".into(),
            owner: "h:1".into(),
            project: "p".into(),
            source: Some(("/codebuild/output/src1/src".into(), "/home/u/app".into())),
            registries: Vec::new(),
        }
    }

    fn denied(method: &str, path: &str) -> String {
        route(method, path).expect_err(path).0
    }

    #[test]
    fn runners_own_image_names_cannot_be_written() {
        let sc = scope();
        let q = |rule: Query, pairs: &[(&str, &str)]| {
            let pairs = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            check_query(rule, pairs, &sc)
        };
        let tag = route("POST", "/v1.41/images/evil:1/tag").unwrap();
        assert_eq!(tag.query, Query::Tag);
        for name in [
            "runner/debian",
            "docker.io/runner/busybox",
            "RUNNER/standard",
        ] {
            let e = q(Query::Tag, &[("repo", name), ("tag", "bookworm")]).unwrap_err();
            assert!(e.0.contains("runner's own base images"), "{}", e.0);
        }
        assert!(q(Query::Tag, &[("repo", "app"), ("tag", "1")]).is_ok());
        assert!(q(
            Query::Build,
            &[("t", "app:1"), ("t", "runner/debian:bookworm")]
        )
        .is_err());
        assert!(q(Query::Build, &[("t", "app:1")]).is_ok());
        // BuildKit's exporter through the classic endpoint names its image itself.
        for outputs in [
            r#"[{"Type":"moby","Attrs":{"name":"runner/debian:bookworm"}}]"#,
            r#"[{"type":"image","attrs":{"name":"app:1, docker.io/runner/x"}}]"#,
            r#"[{"Type":"moby","Attrs":{"dangling-name-prefix":"runner/x"}}]"#,
            r#"{"Type":"moby"}"#,
            r#"[{"Type":"moby","ATTRS":{"name":"runner/x"}}]"#,
            r#"[{"Type":"moby","Attrs":{"name":"runner/x"},"attrs":{}}]"#,
        ] {
            assert!(
                q(Query::Build, &[("version", "2"), ("outputs", outputs)]).is_err(),
                "{outputs}"
            );
        }
        assert!(q(
            Query::Build,
            &[
                ("version", "2"),
                ("outputs", r#"[{"Type":"moby","Attrs":{"name":"app:1"}}]"#)
            ]
        )
        .is_ok());
        assert!(q(Query::ImageCreate, &[("fromImage", "runner/busybox")]).is_err());
        assert!(q(
            Query::ImageCreate,
            &[("fromSrc", "-"), ("repo", "runner/x")]
        )
        .is_err());
        assert!(q(Query::ImageCreate, &[("fromImage", "alpine")]).is_ok());
        assert!(q(
            Query::Commit,
            &[("container", "c1"), ("repo", "runner/standard")]
        )
        .is_err());
        assert!(denied("POST", "/v1.41/images/load").contains("docker load"));
        assert!(!reserved_image_name("myrunner/x") && !reserved_image_name("app/runner/x"));
    }

    #[test]
    fn unknown_endpoints_are_refused() {
        for (m, p) in [
            ("GET", "/plugins"),
            ("POST", "/swarm/init"),
            ("GET", "/services"),
            ("GET", "/system/df"),
            ("POST", "/containers/prune"),
            ("POST", "/volumes/prune"),
            ("POST", "/images/prune"),
            ("POST", "/build/prune"),
            ("GET", "/secrets"),
            ("POST", "/containers/x/copy"),
            ("PUT", "/containers/create"),
        ] {
            assert!(
                denied(m, p).contains("not allowed through runner's Docker gate"),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn old_api_versions_and_tricky_paths_are_refused() {
        assert!(denied("POST", "/v1.20/containers/x/start").contains("1.25 or newer"));
        assert!(route("POST", "/v1.41/containers/x/start").is_ok());
        assert!(denied("GET", "/containers/../info").contains("segment"));
        assert!(denied("GET", "/containers/a%2Fb/json").contains("segment"));
        assert!(denied("GET", "/containers//json").contains("segment"));
        assert!(denied("GET", "/containers/%zz/json").contains("percent"));
    }

    #[test]
    fn per_object_endpoints_need_ownership_and_are_forwarded_canonically() {
        let r = route("POST", "/v1.41/containers/my%20c/stop").unwrap();
        assert_eq!(r.owned, vec![(Kind::Container, 1)]);
        assert_eq!(r.path(), "/v1.41/containers/my%20c/stop");
        let r = route("DELETE", "/containers/abc").unwrap();
        assert_eq!(r.owned, vec![(Kind::Container, 1)]);
        let r = route("POST", "/exec/e1/start").unwrap();
        assert_eq!(r.owned, vec![(Kind::Exec, 1)]);
        assert!(r.upgrade);
        let r = route("DELETE", "/volumes/v").unwrap();
        assert_eq!(r.owned, vec![(Kind::Volume, 1)]);
        let r = route("POST", "/networks/n/connect").unwrap();
        assert_eq!(r.owned, vec![(Kind::Network, 1)]);
        assert_eq!(r.body, Body::NetworkConnect);
        assert_eq!(
            route("POST", "/containers/x/start").unwrap().body,
            Body::Drop
        );
        assert!(route("POST", "/containers/x/attach").unwrap().upgrade);
    }

    #[test]
    fn images_are_shared_but_not_removable() {
        for (m, p) in [
            ("POST", "/images/create"),
            ("POST", "/images/reg:5000/app/push"),
            ("POST", "/images/app/tag"),
            ("GET", "/images/app/json"),
            ("GET", "/images/reg.io/a/b/json"),
            ("GET", "/images/json"),
            ("GET", "/images/app/history"),
            ("POST", "/build"),
            ("POST", "/session"),
            ("POST", "/auth"),
            ("GET", "/_ping"),
            ("HEAD", "/_ping"),
            ("GET", "/version"),
            ("GET", "/info"),
        ] {
            assert!(route(m, p).is_ok(), "{m} {p}");
        }
        assert!(
            denied("DELETE", "/images/runner/debian:bookworm").contains("shared by every build")
        );
        assert!(denied("DELETE", "/images/sha256:abc").contains("shared by every build"));
        // BuildKit's control API is served call by call; its session stream is copied.
        let grpc = route("POST", "/v1.41/grpc").unwrap();
        assert!(grpc.upgrade && grpc.grpc);
        let session = route("POST", "/session").unwrap();
        assert!(session.upgrade && !session.grpc);
        assert!(denied("DELETE", "/images/0123456789ab").contains("shared by every build"));
        let r = route("DELETE", "/images/app:1").unwrap();
        let (q, _) = check_query(r.query, parse_query("force=1&noprune=0"), &scope()).unwrap();
        assert!(q.contains(&("force".into(), "false".into())));
        assert!(!q.contains(&("force".into(), "1".into())));
    }

    #[test]
    fn lists_get_the_build_label_added_to_their_filters() {
        let (q, _) = check_query(
            Query::LabelFilter,
            parse_query("all=1&filters=%7B%22label%22%3A%5B%22x%3Dy%22%5D%2C%22status%22%3A%7B%22running%22%3Atrue%7D%7D"),
            &scope(),
        )
        .unwrap();
        let filters = &q.iter().find(|(k, _)| k == "filters").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(filters).unwrap();
        assert_eq!(v["label"], serde_json::json!(["x=y", "io.runner.gate=b1"]));
        assert_eq!(v["status"], serde_json::json!(["running"]));
        assert!(q.contains(&("all".into(), "1".into())));
        // Two `filters` parameters: both kept, the label still added.
        let (q, _) = check_query(
            Query::LabelFilter,
            vec![
                ("filters".into(), "{}".into()),
                ("filters".into(), "".into()),
            ],
            &scope(),
        )
        .unwrap();
        assert_eq!(q.iter().filter(|(k, _)| k == "filters").count(), 1);
    }

    #[test]
    fn builds_may_not_use_the_host_network_or_a_remote_context() {
        let s = scope();
        let q = |x: &str| check_query(Query::Build, parse_query(x), &s);
        assert!(q("t=app&networkmode=default").is_ok());
        assert!(q("networkmode=bridge&networkmode=host").is_err());
        assert!(q("networkmode=host")
            .unwrap_err()
            .0
            .contains("--network host"));
        assert!(q("remote=https://example.com/x.tar").is_err());
        assert!(q("cgroupparent=/").is_err());
        assert!(check_query(
            Query::ImageCreate,
            parse_query("fromSrc=http://169.254.169.254/"),
            &s
        )
        .is_err());
        assert!(check_query(Query::ImageCreate, parse_query("fromSrc=-"), &s).is_ok());
        // A `;` is not a separator for the engine after re-encoding.
        assert_eq!(
            encode_query(&parse_query("a=b;networkmode=host")),
            "a=b%3Bnetworkmode%3Dhost"
        );
    }

    fn create(json: serde_json::Value) -> Result<(serde_json::Value, Vec<Need>), Denied> {
        check_container_create(&serde_json::to_vec(&json).unwrap(), &scope())
            .map(|(b, n)| (serde_json::from_slice(&b).unwrap(), n))
    }

    #[test]
    fn containers_get_the_build_labels() {
        let (b, needs) = create(serde_json::json!({
            "Image": "alpine", "Labels": {"io.runner.build-id": "other", "mine": "1"}
        }))
        .unwrap();
        assert_eq!(b["Labels"]["io.runner.build-id"], "b1");
        assert_eq!(b["Labels"]["io.runner.owner"], "h:1");
        assert_eq!(b["Labels"]["io.runner.project"], "p");
        assert_eq!(b["Labels"]["io.runner.gate"], "b1");
        assert_eq!(b["Labels"]["mine"], "1");
        assert!(needs.is_empty());
    }

    #[test]
    fn privileged_and_host_namespaces_are_refused() {
        for hc in [
            serde_json::json!({"Privileged": true}),
            serde_json::json!({"CapAdd": ["SYS_ADMIN"]}),
            serde_json::json!({"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]}),
            serde_json::json!({"NetworkMode": "host"}),
            serde_json::json!({"PidMode": "host"}),
            serde_json::json!({"IpcMode": "host"}),
            serde_json::json!({"UTSMode": "host"}),
            serde_json::json!({"UsernsMode": "host"}),
            serde_json::json!({"SecurityOpt": ["seccomp=unconfined"]}),
            serde_json::json!({"SecurityOpt": ["apparmor=unconfined"]}),
            serde_json::json!({"CgroupParent": "/"}),
            serde_json::json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}),
            serde_json::json!({"MaskedPaths": []}),
            serde_json::json!({"Runtime": "runc-unsafe"}),
            serde_json::json!({"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "tcp://127.0.0.1:22"}}}),
            serde_json::json!({"Binds": ["/:/host"]}),
            serde_json::json!({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
            serde_json::json!({"Binds": ["/codebuild/output/src1/src/sub:/x"]}),
            serde_json::json!({"Binds": ["/codebuild/output/src1/src/../../../..:/x"]}),
            serde_json::json!({"Binds": ["/home/u/app/../..:/x"]}),
            serde_json::json!({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/x"}]}),
            serde_json::json!({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/x",
                "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"device": "/"}}}}]}),
        ] {
            let r = create(serde_json::json!({"Image": "alpine", "HostConfig": hc}));
            assert!(r.is_err(), "{hc}");
        }
        // Case variants are not fields the gate forwards: the engine never sees them.
        let (b, _) = create(serde_json::json!({"Image": "a", "HostConfig": {"privileged": true, "PRIVILEGED": true}})).unwrap();
        assert!(b["HostConfig"].get("privileged").is_none());
        assert!(b["HostConfig"].get("PRIVILEGED").is_none());
        assert!(b["HostConfig"].get("Privileged").is_none());
        // Duplicate keys are refused, not resolved differently from the engine.
        assert!(check_container_create(
            br#"{"Image":"a","HostConfig":{"Privileged":false,"Privileged":true}}"#,
            &scope()
        )
        .is_err());
        // Host networking through the endpoints map.
        assert!(create(
            serde_json::json!({"Image": "a", "NetworkingConfig": {"EndpointsConfig": {"host": {}}}})
        )
        .is_err());
    }

    #[test]
    fn the_source_directory_is_translated_and_other_objects_are_needs() {
        let (b, needs) = create(serde_json::json!({
            "Image": "a",
            "HostConfig": {
                "Binds": ["/codebuild/output/src1/src:/src:ro", "/codebuild/output/src1/src/:/s2", "cache:/cache", "/anon"],
                "NetworkMode": "container:sidecar",
                "PidMode": "container:sidecar",
                "VolumesFrom": ["other:ro"],
                "Mounts": [{"Type": "volume", "Source": "data", "Target": "/d"},
                           {"Type": "bind", "Source": "/codebuild/output/src1/src", "Target": "/m"},
                           {"Type": "tmpfs", "Target": "/t"}]
            },
            "NetworkingConfig": {"EndpointsConfig": {"mynet": {}}}
        }))
        .unwrap();
        assert_eq!(
            b["HostConfig"]["Binds"],
            serde_json::json!([
                "/home/u/app:/src:ro",
                "/home/u/app:/s2",
                "cache:/cache",
                "/anon"
            ])
        );
        assert_eq!(b["HostConfig"]["Mounts"][1]["Source"], "/home/u/app");
        assert!(needs.contains(&Need::OwnOrNewVolume("cache".into())));
        assert!(needs.contains(&Need::OwnOrNewVolume("data".into())));
        assert!(needs.contains(&Need::Own(Kind::Container, "sidecar".into())));
        assert!(needs.contains(&Need::Own(Kind::Container, "other".into())));
        assert!(needs.contains(&Need::Own(Kind::Network, "mynet".into())));
        // A copied source has nothing to bind.
        let copied = Scope {
            source: None,
            ..scope()
        };
        assert!(check_container_create(
            br#"{"Image":"a","HostConfig":{"Binds":["/codebuild/output/src1/src:/s"]}}"#,
            &copied
        )
        .is_err());
        // A user network by name in NetworkMode.
        let (_, needs) =
            create(serde_json::json!({"Image": "a", "HostConfig": {"NetworkMode": "mynet"}}))
                .unwrap();
        assert_eq!(needs, vec![Need::Own(Kind::Network, "mynet".into())]);
    }

    #[test]
    fn volumes_networks_and_execs() {
        let s = scope();
        let v: serde_json::Value =
            serde_json::from_slice(&check_volume_create(br#"{"Name":"v"}"#, &s).unwrap().0)
                .unwrap();
        assert_eq!(v["Labels"]["io.runner.build-id"], "b1");
        assert!(check_volume_create(
            br#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
            &s
        )
        .is_err());
        assert!(check_volume_create(br#"{"Name":"v","Driver":"nfs"}"#, &s).is_err());
        let n: serde_json::Value =
            serde_json::from_slice(&check_network_create(br#"{"Name":"n"}"#, &s).unwrap()).unwrap();
        assert_eq!(n["Labels"]["io.runner.gate"], "b1");
        assert!(check_network_create(br#"{"Name":"n","Driver":"macvlan"}"#, &s).is_err());
        assert!(check_network_create(
            br#"{"Name":"n","Options":{"com.docker.network.bridge.name":"docker0"}}"#,
            &s
        )
        .is_err());
        assert!(check_exec_create(br#"{"Cmd":["sh"],"Privileged":true}"#).is_err());
        assert!(check_exec_create(br#"{"Cmd":["sh"]}"#).is_ok());
        let (_, needs) = check_network_connect(br#"{"Container":"c1"}"#).unwrap();
        assert_eq!(needs, vec![Need::Own(Kind::Container, "c1".into())]);
        let (_, needs) =
            check_query(Query::Commit, parse_query("container=c2&repo=x"), &s).unwrap();
        assert_eq!(needs, vec![Need::Own(Kind::Container, "c2".into())]);
    }

    #[test]
    fn mapped_registries_are_rewritten() {
        let s = Scope {
            registries: vec![(
                "1.dkr.ecr.us-east-1.amazonaws.com".into(),
                endpoint_host("http://127.0.0.1:5000").unwrap(),
            )],
            ..scope()
        };
        assert_eq!(
            map_repository("1.dkr.ecr.us-east-1.amazonaws.com/app", &s).as_deref(),
            Some("127.0.0.1:5000/app")
        );
        assert_eq!(map_repository("docker.io/library/app", &s), None);
        assert_eq!(map_repository("app", &s), None);
        let b: serde_json::Value = serde_json::from_slice(
            &check_auth(
                br#"{"username":"AWS","password":"t","serveraddress":"https://1.dkr.ecr.us-east-1.amazonaws.com"}"#,
                &s,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(b["serveraddress"], "127.0.0.1:5000");
        assert_eq!(
            split_tag("127.0.0.1:5000/app:1"),
            ("127.0.0.1:5000/app", Some("1"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", None)
        );
    }

    #[test]
    fn ownership_is_the_build_id_label() {
        let s = scope();
        let own = serde_json::json!({"io.runner.build-id": "b1", "io.runner.gate": "b1"});
        let other = serde_json::json!({"io.runner.build-id": "b2", "io.runner.gate": "b2"});
        // The build's own build container: same build id, not created through the gate.
        let build_container = serde_json::json!({"io.runner.build-id": "b1"});
        assert!(is_own(own.as_object(), &s));
        assert!(!is_own(other.as_object(), &s));
        assert!(!is_own(build_container.as_object(), &s));
        assert!(!is_own(None, &s));
    }
}
