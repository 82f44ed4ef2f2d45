//! BuildKit's gRPC API through the gate (pure: no IO).
//!
//! `POST /grpc` (upgraded to h2c) is BuildKit's control API: `docker buildx build` with
//! the docker driver, and plain `docker build` when the buildx plugin is installed. The
//! proxy serves it call by call (`proxy.rs`): `route` says which gRPC methods reach the
//! engine, and `check_solve` reads the one request that decides what a build may do —
//! `moby.buildkit.v1.Control/Solve`: its entitlements (`network.host` would run steps
//! in the host's network namespace, `security.insecure` privileged), the frontend's
//! network mode, and the exporters' image names (`runner/…` is runner's own).
//!
//! The protobuf decoding is a small wire-format reader (varints and length-delimited
//! fields; unknown fields skipped by wire type); anything it cannot read is refused,
//! never guessed at. Field numbers: moby/buildkit `api/services/control/control.proto`.

use super::policy::{self, Denied, Scope};

/// The largest `Solve` request read (its LLB definition, when a client sends one, is the
/// bulk; a Dockerfile build sends a few KiB).
pub const MAX_SOLVE_REQUEST: usize = 64 * 1024 * 1024;

/// gRPC status codes the gate answers with.
pub const PERMISSION_DENIED: u32 = 7;
pub const INVALID_ARGUMENT: u32 = 3;
pub const UNAVAILABLE: u32 = 14;

/// What the proxy does with one gRPC call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Forwarded unchanged, streams and trailers both ways.
    Forward,
    /// `Control/Solve`: read (up to `MAX_SOLVE_REQUEST`), `check_solve`, then forwarded.
    Solve,
}

const CONTROL: &str = "moby.buildkit.v1.Control";
const BRIDGE: &str = "moby.buildkit.v1.frontend.LLBBridge";
const HEALTH: &str = "grpc.health.v1.Health";

/// The allowlist of gRPC methods (`/package.Service/Method`).
pub fn route(path: &str) -> Result<Call, Denied> {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", path));
    let call = match (service, method) {
        (CONTROL, "Solve") => Some(Call::Solve),
        // The build's own progress and session (refs are the client's random ids).
        (CONTROL, "Status" | "Session" | "ListWorkers" | "Info") => Some(Call::Forward),
        // The client-side frontend (buildx's build function) driving its own build. The
        // interactive containers (`NewContainer`, `ExecProcess`: `buildx debug`) are not
        // served: they take a network mode and a security mode of their own.
        (
            BRIDGE,
            "ResolveImageConfig" | "ResolveSourceMeta" | "Solve" | "ReadFile" | "ReadDir"
            | "StatFile" | "Evaluate" | "Ping" | "Return" | "Inputs" | "Warn",
        ) => Some(Call::Forward),
        (HEALTH, "Check") => Some(Call::Forward),
        _ => None,
    };
    if let Some(c) = call {
        return Ok(c);
    }
    let why = match (service, method) {
        (CONTROL, "Prune" | "DiskUsage" | "ListenBuildHistory" | "UpdateBuildHistory") => {
            "the build cache and its history are shared by every build on this engine"
        }
        (BRIDGE, "NewContainer" | "ReleaseContainer" | "ExecProcess") => {
            "interactive build containers (`docker buildx debug`, `--invoke`) are not \
             served; run the image with `docker run` instead"
        }
        _ => "it is not a method a build needs",
    };
    Err(Denied(format!(
        "runner's Docker gate refuses the BuildKit call {path}: {why}"
    )))
}

/// Why a protobuf message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Truncated,
    BadVarint,
    FieldZero,
    /// Groups (wire types 3 and 4) and wire types 6 and 7.
    WireType(u8),
    NotUtf8,
    /// A known field with another wire type than its declaration's.
    WrongType(u32),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Truncated => write!(f, "a field runs past the end of the message"),
            Malformed::BadVarint => write!(f, "a varint is longer than 10 bytes"),
            Malformed::FieldZero => write!(f, "a field has number 0"),
            Malformed::WireType(w) => write!(f, "unsupported wire type {w}"),
            Malformed::NotUtf8 => write!(f, "a string field is not UTF-8"),
            Malformed::WrongType(n) => write!(f, "field {n} has an unexpected wire type"),
        }
    }
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads a base-128 varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, Malformed> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(Malformed::Truncated);
        };
        *pos += 1;
        // The tenth byte may carry only the 64th bit.
        if i == 9 && b > 1 {
            return Err(Malformed::BadVarint);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Malformed::BadVarint)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], Malformed> {
    let n = usize::try_from(n).map_err(|_| Malformed::Truncated)?;
    let end = pos.checked_add(n).ok_or(Malformed::Truncated)?;
    let out = buf.get(*pos..end).ok_or(Malformed::Truncated)?;
    *pos = end;
    Ok(out)
}

/// The fields of a message, in order: `(field number, value)`.
pub fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Malformed> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| Malformed::FieldZero)?;
        if number == 0 {
            return Err(Malformed::FieldZero);
        }
        let value = match (key & 7) as u8 {
            0 => Value::Varint(read_varint(buf, &mut pos)?),
            1 => {
                let b = take(buf, &mut pos, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = read_varint(buf, &mut pos)?;
                Value::Bytes(take(buf, &mut pos, len)?)
            }
            5 => {
                let b = take(buf, &mut pos, 4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            w => return Err(Malformed::WireType(w)),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn bytes_of(number: u32, v: Value<'_>) -> Result<&[u8], Malformed> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(Malformed::WrongType(number)),
    }
}

fn string_of(number: u32, v: Value<'_>) -> Result<String, Malformed> {
    let b = bytes_of(number, v)?;
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| Malformed::NotUtf8)
}

/// A `map<string, string>` entry (`key = 1`, `value = 2`).
fn map_entry(b: &[u8]) -> Result<(String, String), Malformed> {
    let (mut k, mut v) = (String::new(), String::new());
    for (n, val) in fields(b)? {
        match n {
            1 => k = string_of(n, val)?,
            2 => v = string_of(n, val)?,
            _ => {}
        }
    }
    Ok((k, v))
}

/// What the gate reads of a `SolveRequest`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Solve {
    /// `Entitlements = 9`.
    pub entitlements: Vec<String>,
    /// `FrontendAttrs = 7`.
    pub frontend_attrs: Vec<(String, String)>,
    /// `(type, attrs)`: `ExporterDeprecated = 3` with `ExporterAttrsDeprecated = 4`, and
    /// each of `Exporters = 13` (`Type = 1`, `Attrs = 2`).
    pub exporters: Vec<(String, Vec<(String, String)>)>,
    /// `EnableSessionExporter = 14`: the engine would ask the client for its exporters.
    pub session_exporter: bool,
}

/// Decodes the fields of a `SolveRequest` the gate checks.
pub fn decode_solve(msg: &[u8]) -> Result<Solve, Malformed> {
    let mut s = Solve::default();
    let mut deprecated_type = String::new();
    let mut deprecated_attrs = Vec::new();
    for (n, v) in fields(msg)? {
        match n {
            3 => deprecated_type = string_of(n, v)?,
            4 => deprecated_attrs.push(map_entry(bytes_of(n, v)?)?),
            7 => s.frontend_attrs.push(map_entry(bytes_of(n, v)?)?),
            9 => s.entitlements.push(string_of(n, v)?),
            13 => {
                let (mut typ, mut attrs) = (String::new(), Vec::new());
                for (en, ev) in fields(bytes_of(n, v)?)? {
                    match en {
                        1 => typ = string_of(en, ev)?,
                        2 => attrs.push(map_entry(bytes_of(en, ev)?)?),
                        _ => {}
                    }
                }
                s.exporters.push((typ, attrs));
            }
            14 => match v {
                Value::Varint(x) => s.session_exporter |= x != 0,
                _ => return Err(Malformed::WrongType(n)),
            },
            _ => {}
        }
    }
    if !deprecated_type.is_empty() || !deprecated_attrs.is_empty() {
        s.exporters.insert(0, (deprecated_type, deprecated_attrs));
    }
    Ok(s)
}

/// The one message of a unary call's body: a 1-byte compression flag, a 4-byte
/// big-endian length, the message.
pub fn unary_message(body: &[u8]) -> Result<&[u8], Denied> {
    let bad = |why: &str| Denied(format!("the BuildKit solve request is malformed: {why}"));
    let Some((&flag, rest)) = body.split_first() else {
        return Err(bad("it has no message"));
    };
    match flag {
        0 => {}
        1 => {
            return Err(Denied(
                "runner's Docker gate reads BuildKit's solve request and refuses a compressed \
                 one; send it uncompressed (the docker and buildx clients do)"
                    .into(),
            ))
        }
        _ => return Err(bad("unknown message flag")),
    }
    let Some((len, msg)) = rest.split_first_chunk::<4>() else {
        return Err(bad("its length prefix is cut short"));
    };
    if u32::from_be_bytes(*len) as usize != msg.len() {
        return Err(bad(
            "its length prefix does not match its body (one message expected)",
        ));
    }
    Ok(msg)
}

/// `Control/Solve`'s body: refused when it asks for an entitlement, a network mode other
/// than the build's own namespace, a session-provided exporter, or an image name runner
/// keeps for itself (or a push to a registry runner maps elsewhere).
pub fn check_solve(body: &[u8], scope: &Scope) -> Result<(), Denied> {
    let msg = unary_message(body)?;
    let s = decode_solve(msg)
        .map_err(|e| Denied(format!("the BuildKit solve request is malformed: {e}")))?;
    if let Some(e) = s.entitlements.first() {
        let why = match e.as_str() {
            "network.host" => "a build may not use the host's network; drop --network host / \
                 --allow network.host (steps get their own network namespace)"
                .to_string(),
            "security.insecure" => "a build's steps get no more privilege than the build \
                                    itself; drop --allow security.insecure"
                .to_string(),
            other => format!("builds get no entitlements; drop --allow {other}"),
        };
        return Err(Denied(format!(
            "runner's Docker gate refuses BuildKit entitlement {e}: {why}"
        )));
    }
    for (k, v) in &s.frontend_attrs {
        if k == "force-network-mode" && !matches!(v.as_str(), "" | "default" | "none" | "sandbox") {
            return Err(Denied(format!(
                "docker buildx build --network {v} is not allowed through runner's Docker \
                 gate (only the default network or none)"
            )));
        }
    }
    if s.session_exporter {
        return Err(Denied(
            "runner's Docker gate refuses exporters provided by the client's session: it \
             checks the image names a build writes; name the outputs in the build request"
                .into(),
        ));
    }
    for (typ, attrs) in &s.exporters {
        let push = attrs
            .iter()
            .any(|(k, v)| k == "push" && matches!(v.trim(), "true" | "1" | "True" | "TRUE"));
        for (k, v) in attrs {
            if !matches!(k.as_str(), "name" | "dangling-name-prefix") {
                continue;
            }
            for name in image_names(v) {
                policy::refuse_reserved(name, "the BuildKit output image name (-t / name=)")?;
                let repo = policy::split_tag(name.split('@').next().unwrap_or(name)).0;
                if push && policy::map_repository(repo, scope).is_some() {
                    return Err(Denied(format!(
                        "pushing {name} from BuildKit ({typ} exporter, push=true) is not \
                         allowed through runner's Docker gate: runner maps that registry to \
                         another endpoint; build with --load, then `docker push {name}`"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// An exporter's `name` attribute: a comma-separated list (BuildKit also reads it as CSV,
/// so quotes are stripped too).
fn image_names(v: &str) -> impl Iterator<Item = &str> {
    v.split(',')
        .map(|n| n.trim().trim_matches(|c| c == '"' || c == '\'').trim())
        .filter(|n| !n.is_empty())
}

/// `grpc-message`: percent-encoded outside printable ASCII (and `%` itself).
pub fn encode_grpc_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(n) << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v.as_bytes(), &mut e);
        e
    }

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        f.extend_from_slice(msg);
        f
    }

    /// A SolveRequest as buildx sends one: a ref, a session, the exporter twice (the
    /// deprecated fields and `Exporters`), frontend attributes, entitlements.
    fn solve(
        exporter: Option<(&str, &[(&str, &str)])>,
        ents: &[&str],
        fe: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut m = Vec::new();
        bytes_field(1, b"ref123", &mut m);
        bytes_field(5, b"session1", &mut m);
        if let Some((typ, attrs)) = exporter {
            bytes_field(3, typ.as_bytes(), &mut m);
            for (k, v) in attrs {
                bytes_field(4, &entry(k, v), &mut m);
            }
            let mut e = Vec::new();
            bytes_field(1, typ.as_bytes(), &mut e);
            for (k, v) in attrs {
                bytes_field(2, &entry(k, v), &mut e);
            }
            bytes_field(13, &e, &mut m);
        }
        for (k, v) in fe {
            bytes_field(7, &entry(k, v), &mut m);
        }
        for e in ents {
            bytes_field(9, e.as_bytes(), &mut m);
        }
        // An unknown varint, fixed32 and fixed64 field: skipped.
        varint(11 << 3, &mut m);
        varint(1, &mut m);
        varint(20 << 3 | 5, &mut m);
        m.extend_from_slice(&[1, 2, 3, 4]);
        varint(21 << 3 | 1, &mut m);
        m.extend_from_slice(&[0; 8]);
        frame(&m)
    }

    fn scope() -> Scope {
        Scope {
            build_id: "b1".into(),
            registries: vec![(
                "1.dkr.ecr.us-east-1.amazonaws.com".into(),
                "127.0.0.1:5000".into(),
            )],
            ..Scope::default()
        }
    }

    fn refused(body: &[u8]) -> String {
        check_solve(body, &scope()).expect_err("refused").0
    }

    #[test]
    fn varints_decode_and_malformed_ones_are_errors() {
        let mut b = Vec::new();
        varint(300, &mut b);
        varint(u64::MAX, &mut b);
        let mut pos = 0;
        assert_eq!(read_varint(&b, &mut pos), Ok(300));
        assert_eq!(read_varint(&b, &mut pos), Ok(u64::MAX));
        assert_eq!(pos, b.len());
        assert_eq!(
            read_varint(&[0x80, 0x80], &mut 0),
            Err(Malformed::Truncated)
        );
        assert_eq!(read_varint(&[], &mut 0), Err(Malformed::Truncated));
        assert_eq!(read_varint(&[0xff; 11], &mut 0), Err(Malformed::BadVarint));
        let mut ten = vec![0xff; 9];
        ten.push(0x02);
        assert_eq!(read_varint(&ten, &mut 0), Err(Malformed::BadVarint));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        // A length past the end, a huge length, a cut key, field 0, groups, cut fixed.
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x80],
            &[0x00, 0x01],
            &[0x0b],
            &[0x0c],
            &[0x0e, 0x00],
            &[0x0d, 1, 2],
            &[0x09, 1, 2, 3],
        ] {
            assert!(fields(bad).is_err(), "{bad:?}");
            assert!(decode_solve(bad).is_err(), "{bad:?}");
            assert!(check_solve(&frame(bad), &scope()).is_err(), "{bad:?}");
        }
        // A known string field as a varint; invalid UTF-8 in an entitlement.
        assert_eq!(decode_solve(&[0x48, 0x01]), Err(Malformed::WrongType(9)));
        assert_eq!(decode_solve(&[0x4a, 0x01, 0xff]), Err(Malformed::NotUtf8));
        // Framing: empty, cut, compressed, length mismatch, two messages.
        let ok = solve(None, &[], &[]);
        assert!(check_solve(&ok, &scope()).is_ok());
        assert!(refused(&[]).contains("malformed"));
        assert!(refused(&[0, 0, 0]).contains("malformed"));
        let mut compressed = ok.clone();
        compressed[0] = 1;
        assert!(refused(&compressed).contains("compressed"));
        assert!(refused(&ok[..ok.len() - 1]).contains("length prefix"));
        let mut two = ok.clone();
        two.extend_from_slice(&ok);
        assert!(refused(&two).contains("length prefix"));
        let mut flag = ok.clone();
        flag[0] = 2;
        assert!(refused(&flag).contains("flag"));
    }

    #[test]
    fn a_plain_build_passes_and_is_decoded() {
        let body = solve(
            Some(("moby", &[("name", "app:1,docker.io/me/app:2")])),
            &[],
            &[
                ("filename", "Dockerfile"),
                ("force-network-mode", "sandbox"),
            ],
        );
        assert!(check_solve(&body, &scope()).is_ok());
        let s = decode_solve(unary_message(&body).unwrap()).unwrap();
        assert_eq!(s.exporters.len(), 2);
        assert_eq!(s.exporters[0].0, "moby");
        assert_eq!(
            s.exporters[1].1,
            vec![("name".to_string(), "app:1,docker.io/me/app:2".to_string())]
        );
        assert_eq!(s.frontend_attrs.len(), 2);
        assert!(s.entitlements.is_empty());
    }

    #[test]
    fn entitlements_and_the_host_network_are_refused() {
        let e = refused(&solve(
            None,
            &["network.host"],
            &[("force-network-mode", "host")],
        ));
        assert!(
            e.contains("runner's Docker gate refuses BuildKit entitlement network.host")
                && e.contains("--network host"),
            "{e}"
        );
        let e = refused(&solve(None, &["security.insecure"], &[]));
        assert!(e.contains("entitlement security.insecure"), "{e}");
        assert!(refused(&solve(None, &["device"], &[])).contains("--allow device"));
        let e = refused(&solve(None, &[], &[("force-network-mode", "host")]));
        assert!(e.contains("--network host"), "{e}");
        assert!(check_solve(
            &solve(None, &[], &[("force-network-mode", "none")]),
            &scope()
        )
        .is_ok());
    }

    #[test]
    fn runners_own_image_names_are_refused_in_every_exporter_field() {
        for name in [
            "runner/debian:bookworm",
            "app:1,runner/x",
            " docker.io/runner/busybox:latest",
            "\"index.docker.io/runner/x\"",
            "RUNNER/x",
        ] {
            for typ in ["moby", "image", "docker"] {
                let e = refused(&solve(Some((typ, &[("name", name)])), &[], &[]));
                assert!(e.contains("runner's own base images"), "{name}: {e}");
            }
        }
        assert!(refused(&solve(
            Some(("image", &[("dangling-name-prefix", "runner/debian")])),
            &[],
            &[]
        ))
        .contains("runner's own"));
        // Only in the deprecated fields (what an engine before BuildKit 0.13 reads).
        let mut m = Vec::new();
        bytes_field(3, b"moby", &mut m);
        bytes_field(4, &entry("name", "runner/x:1"), &mut m);
        assert!(refused(&frame(&m)).contains("runner's own"));
        // Only in `Exporters`.
        let mut e = Vec::new();
        bytes_field(1, b"image", &mut e);
        bytes_field(2, &entry("name", "runner/x:1"), &mut e);
        let mut m = Vec::new();
        bytes_field(13, &e, &mut m);
        assert!(refused(&frame(&m)).contains("runner's own"));
        // A session-provided exporter.
        let mut m = Vec::new();
        varint(14 << 3, &mut m);
        varint(1, &mut m);
        assert!(refused(&frame(&m)).contains("session"));
    }

    #[test]
    fn a_push_to_a_mapped_registry_is_refused_with_the_way_around() {
        let name = "1.dkr.ecr.us-east-1.amazonaws.com/app:1";
        let e = refused(&solve(
            Some(("image", &[("name", name), ("push", "true")])),
            &[],
            &[],
        ));
        assert!(e.contains("docker push 1.dkr.ecr"), "{e}");
        assert!(check_solve(
            &solve(Some(("image", &[("name", name)])), &[], &[]),
            &scope()
        )
        .is_ok());
        assert!(check_solve(
            &solve(
                Some(("image", &[("name", "reg.io/app:1"), ("push", "true")])),
                &[],
                &[]
            ),
            &scope()
        )
        .is_ok());
    }

    #[test]
    fn only_the_methods_a_build_needs_are_routed() {
        assert_eq!(route("/moby.buildkit.v1.Control/Solve"), Ok(Call::Solve));
        for ok in [
            "/moby.buildkit.v1.Control/Status",
            "/moby.buildkit.v1.Control/Session",
            "/moby.buildkit.v1.Control/ListWorkers",
            "/moby.buildkit.v1.frontend.LLBBridge/Solve",
            "/moby.buildkit.v1.frontend.LLBBridge/Return",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(route(ok), Ok(Call::Forward), "{ok}");
        }
        for (no, why) in [
            ("/moby.buildkit.v1.Control/Prune", "shared"),
            ("/moby.buildkit.v1.Control/DiskUsage", "shared"),
            (
                "/moby.buildkit.v1.frontend.LLBBridge/NewContainer",
                "docker run",
            ),
            (
                "/moby.buildkit.v1.frontend.LLBBridge/ExecProcess",
                "docker run",
            ),
            ("/other.Service/Call", "not a method"),
            ("", "not a method"),
            ("/moby.buildkit.v1.Control/Solve/x", "not a method"),
        ] {
            assert!(route(no).unwrap_err().0.contains(why), "{no}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(encode_grpc_message("a b%c\né"), "a b%25c%0A%C3%A9");
    }
}
