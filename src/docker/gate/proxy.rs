//! The gate's HTTP edge: a server on the build's private socket that applies `policy`
//! and forwards what it allows to the engine's socket, one upstream connection per
//! request (so an upgraded stream — attach, exec, BuildKit's session — owns its
//! connection), copying upgraded streams both ways — except BuildKit's gRPC API
//! (`/grpc`), served as HTTP/2 call by call (`grpc_proxy`, checked by `buildkit`).

use super::buildkit;
use super::policy::{self, Body, Denied, Kind, Need, Route, Scope};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio::sync::watch;

pub(super) type GateBody = BoxBody<Bytes, hyper::Error>;

/// Request bodies the gate reads (create requests) are JSON of a few KiB.
const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

pub(super) struct State {
    pub scope: Scope,
    pub upstream: PathBuf,
    pub stop: watch::Receiver<bool>,
}

/// Why a request was not forwarded, as the engine's own error shape (`{"message"}`).
struct Reply {
    status: StatusCode,
    message: String,
}

impl From<Denied> for Reply {
    fn from(d: Denied) -> Self {
        Reply {
            status: StatusCode::FORBIDDEN,
            message: d.0,
        }
    }
}

fn upstream_error(e: impl std::fmt::Display) -> Reply {
    Reply {
        status: StatusCode::BAD_GATEWAY,
        message: format!("runner's Docker gate could not reach the Docker engine: {e}"),
    }
}

fn full(b: impl Into<Bytes>) -> GateBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn empty() -> GateBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn reply(r: Reply) -> Response<GateBody> {
    let body = serde_json::json!({ "message": r.message }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = r.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Serves one connection of the build's client.
pub(super) async fn serve_connection(state: Arc<State>, stream: UnixStream) {
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move {
            let r = match handle(&state, req).await {
                Ok(r) => r,
                Err(e) => reply(e),
            };
            Ok::<_, Infallible>(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let _ = conn.await;
}

/// Sends one request to the engine over a new connection.
async fn send(
    upstream: &std::path::Path,
    req: Request<GateBody>,
) -> Result<Response<Incoming>, Reply> {
    let stream = UnixStream::connect(upstream)
        .await
        .map_err(upstream_error)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(upstream_error)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(upstream_error)
}

/// A small JSON request of the gate's own (inspect, create a volume).
async fn call(
    state: &State,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), Reply> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "docker");
    let body = match body {
        Some(v) => {
            b = b.header(CONTENT_TYPE, "application/json");
            full(v.to_string())
        }
        None => empty(),
    };
    let req = b.body(body).map_err(upstream_error)?;
    let resp = send(&state.upstream, req).await?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(upstream_error)?
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}

fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Resolves `id` (name, short or full id) of `kind` to the object's full id, if it is the
/// build's own; otherwise refuses.
async fn own(state: &State, kind: Kind, id: &str) -> Result<String, Reply> {
    let (path, id_key) = match kind {
        Kind::Container => (format!("/containers/{}/json", segment(id)), "Id"),
        Kind::Exec => (format!("/exec/{}/json", segment(id)), "ID"),
        Kind::Volume => (format!("/volumes/{}", segment(id)), "Name"),
        Kind::Network => (format!("/networks/{}", segment(id)), "Id"),
    };
    let (status, v) = call(state, Method::GET, &path, None).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(Reply {
            status: StatusCode::NOT_FOUND,
            message: format!("No such {}: {id}", kind.noun()),
        });
    }
    if !status.is_success() {
        return Err(Reply {
            status,
            message: v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("inspect failed")
                .to_string(),
        });
    }
    let full_id = v
        .get(id_key)
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string();
    let owned = match kind {
        // An exec instance is the build's when its container is.
        Kind::Exec => {
            let container = v
                .get("ContainerID")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string();
            Box::pin(own(state, Kind::Container, &container))
                .await
                .is_ok()
        }
        Kind::Container => policy::is_own(
            v.get("Config")
                .and_then(|c| c.get("Labels"))
                .and_then(|l| l.as_object()),
            &state.scope,
        ),
        Kind::Volume | Kind::Network => {
            policy::is_own(v.get("Labels").and_then(|l| l.as_object()), &state.scope)
        }
    };
    if !owned || full_id.is_empty() {
        return Err(Denied(format!(
            "{} {id:?} does not belong to this build: runner's Docker gate lets a build reach \
             only the containers, execs, volumes and networks it created itself",
            kind.noun()
        ))
        .into());
    }
    Ok(full_id)
}

async fn resolve(state: &State, need: &Need) -> Result<(), Reply> {
    match need {
        Need::Own(kind, id) => own(state, *kind, id).await.map(|_| ()),
        Need::OwnOrNoVolume(name) => match own(state, Kind::Volume, name).await {
            Err(r) if r.status == StatusCode::NOT_FOUND => Ok(()),
            other => other.map(|_| ()),
        },
        Need::OwnOrNewVolume(name) => {
            match own(state, Kind::Volume, name).await {
                Ok(_) => Ok(()),
                Err(r) if r.status == StatusCode::NOT_FOUND => {
                    // Created now, labelled, so it is removed with the build's objects.
                    let labels: serde_json::Map<String, serde_json::Value> = state
                        .scope
                        .labels()
                        .into_iter()
                        .map(|(k, v)| (k, serde_json::Value::String(v)))
                        .collect();
                    let (status, v) = call(
                        state,
                        Method::POST,
                        "/volumes/create",
                        Some(serde_json::json!({ "Name": name, "Labels": labels })),
                    )
                    .await?;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(Reply {
                            status,
                            message: v
                                .get("message")
                                .and_then(|m| m.as_str())
                                .unwrap_or("volume create failed")
                                .to_string(),
                        })
                    }
                }
                Err(r) => Err(r),
            }
        }
    }
}

/// Everything decided before the body is read: the route, owned objects resolved to full
/// ids, the query checked and rewritten, what it needs, mapped registries.
async fn check(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
) -> Result<(Route, policy::Pairs, Option<(String, String)>), Reply> {
    let mut route: Route = policy::route(method, path)?;
    for (kind, index) in route.owned.clone() {
        let Some(id) = route.segments.get(index).cloned() else {
            continue;
        };
        let full_id = own(state, kind, &id).await?;
        route.segments[index] = full_id;
    }
    let pairs = policy::parse_query(query);
    let (pairs, needs) = policy::check_query(route.query, pairs, &state.scope)?;
    for n in &needs {
        resolve(state, n).await?;
    }
    let (pairs, tag_after_pull) = map_registry(state, &mut route, pairs).await?;
    Ok((route, pairs, tag_after_pull))
}

/// Reads and drops a refused request's body, up to 1 GiB (beyond, the connection closes
/// and the client sees a broken pipe instead of the message).
async fn drain(mut body: Incoming) {
    const LIMIT: u64 = 1 << 30;
    let mut read = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            read += data.len() as u64;
            if read > LIMIT {
                break;
            }
        }
    }
}

async fn handle(state: &State, mut req: Request<Incoming>) -> Result<Response<GateBody>, Reply> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (route, pairs, tag_after_pull) = match check(state, &method, &path, &query).await {
        Ok(checked) => checked,
        Err(reply) => {
            // Read what the client is still sending (a build context, an archive), so it
            // gets the refusal's message rather than a broken pipe.
            drain(req.into_body()).await;
            return Err(reply);
        }
    };
    if route.grpc && req.headers().get(UPGRADE).map(HeaderValue::as_bytes) != Some(b"h2c") {
        // Only BuildKit's HTTP/2 (h2c) is served call by call; nothing else is copied.
        drain(req.into_body()).await;
        return Err(Reply {
            status: StatusCode::BAD_REQUEST,
            message: "BuildKit's API (/grpc) is served through runner's Docker gate only as \
                      an h2c upgrade (docker buildx with the docker driver)"
                .to_string(),
        });
    }
    let client_upgrade = (route.upgrade && req.headers().contains_key(UPGRADE))
        .then(|| hyper::upgrade::on(&mut req));

    let (parts, incoming) = req.into_parts();
    let body = match route.body {
        Body::Stream => Outgoing::Stream(incoming),
        Body::Drop => Outgoing::Bytes(Vec::new()),
        rule => {
            let bytes = Limited::new(incoming, MAX_JSON_BODY)
                .collect()
                .await
                .map_err(|e| Reply {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("cannot read the request body: {e}"),
                })?
                .to_bytes();
            let (body, needs) = match rule {
                Body::CreateContainer => {
                    let name = pairs
                        .iter()
                        .find(|(k, _)| k == "name")
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("");
                    policy::check_name(name)?;
                    policy::check_container_create(&bytes, &state.scope)?
                }
                Body::CreateVolume => policy::check_volume_create(&bytes, &state.scope)?,
                Body::CreateNetwork => {
                    (policy::check_network_create(&bytes, &state.scope)?, vec![])
                }
                Body::CreateExec => (policy::check_exec_create(&bytes)?, vec![]),
                Body::NetworkConnect => policy::check_network_connect(&bytes)?,
                Body::Auth => (policy::check_auth(&bytes, &state.scope)?, vec![]),
                Body::Stream | Body::Drop => (bytes.to_vec(), vec![]),
            };
            for n in &needs {
                resolve(state, n).await?;
            }
            Outgoing::Bytes(body)
        }
    };
    let resp = forward(state, &route, &pairs, parts, body, client_upgrade).await?;
    match tag_after_pull {
        Some((mapped, original)) if resp.status().is_success() => {
            // The pull's progress is read to the end before the original name is tagged.
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(upstream_error)?.to_bytes();
            tag(state, &mapped, &original).await?;
            Ok(Response::from_parts(parts, full(bytes)))
        }
        _ => Ok(resp),
    }
}

/// `POST /images/{name}/tag`: `source` gets the name `target` (`repo:tag`).
async fn tag(state: &State, source: &str, target: &str) -> Result<(), Reply> {
    let (repo, t) = policy::split_tag(target);
    let mut q = vec![("repo".to_string(), repo.to_string())];
    if let Some(t) = t {
        q.push(("tag".to_string(), t.to_string()));
    }
    let path = format!(
        "/images/{}/tag?{}",
        source.split('/').map(segment).collect::<Vec<_>>().join("/"),
        policy::encode_query(&q)
    );
    let (status, v) = call(state, Method::POST, &path, None).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Reply {
            status,
            message: v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("tag failed")
                .to_string(),
        })
    }
}

/// A registry runner maps elsewhere (`Scope::registries`): a push of `HOST/app:tag`
/// tags the image as `MAPPED/app:tag` and pushes that; a pull of `HOST/app:tag` pulls
/// `MAPPED/app:tag` and then tags it with the name asked for (returned, to do after the
/// pull).
async fn map_registry(
    state: &State,
    route: &mut Route,
    mut pairs: policy::Pairs,
) -> Result<(policy::Pairs, Option<(String, String)>), Reply> {
    if state.scope.registries.is_empty() {
        return Ok((pairs, None));
    }
    let segs = &route.segments;
    let is_push = segs.len() >= 3
        && segs.first().map(String::as_str) == Some("images")
        && segs.last().map(String::as_str) == Some("push");
    if is_push {
        let repo = segs[1..segs.len() - 1].join("/");
        if let Some(mapped) = policy::map_repository(&repo, &state.scope) {
            let t = pairs
                .iter()
                .find(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            if t.is_empty() {
                return Err(Denied(format!(
                    "push {repo} with a tag (`docker push {repo}:TAG`): runner maps its \
                     registry to another endpoint one tag at a time"
                ))
                .into());
            }
            tag(state, &format!("{repo}:{t}"), &format!("{mapped}:{t}")).await?;
            let mut s = vec!["images".to_string()];
            s.extend(mapped.split('/').map(str::to_string));
            s.push("push".to_string());
            route.segments = s;
        }
        return Ok((pairs, None));
    }
    if segs.len() == 2 && segs[0] == "images" && segs[1] == "create" {
        let from = pairs
            .iter()
            .find(|(k, _)| k == "fromImage")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let t = pairs
            .iter()
            .find(|(k, _)| k == "tag")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if let Some(mapped) = policy::map_repository(&from, &state.scope) {
            for (k, v) in pairs.iter_mut() {
                if k == "fromImage" {
                    *v = mapped.clone();
                }
            }
            // A digest reference (`@sha256:…`) keeps no tag to carry over.
            if !t.is_empty() && !t.starts_with("sha256:") {
                return Ok((
                    pairs,
                    Some((format!("{mapped}:{t}"), format!("{from}:{t}"))),
                ));
            }
        }
    }
    Ok((pairs, None))
}

/// The body forwarded: rebuilt by the policy, or the client's streamed through.
enum Outgoing {
    Bytes(Vec<u8>),
    Stream(Incoming),
}

async fn forward(
    state: &State,
    route: &Route,
    pairs: &[(String, String)],
    parts: hyper::http::request::Parts,
    body: Outgoing,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<GateBody>, Reply> {
    let mut uri = route.path();
    if !pairs.is_empty() {
        uri.push('?');
        uri.push_str(&policy::encode_query(pairs));
    }
    let mut headers = parts.headers;
    let body = match body {
        Outgoing::Bytes(b) => {
            headers.remove(TRANSFER_ENCODING);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(b.len()));
            full(b)
        }
        Outgoing::Stream(i) => i.boxed(),
    };
    let mut out = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(upstream_error)?;
    *out.headers_mut() = headers;
    let mut resp = send(&state.upstream, out).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(upstream_error("the engine switched protocols unasked"));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let mut stop = state.stop.clone();
        let grpc = route.grpc.then(|| Arc::new(state.scope.clone()));
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            match grpc {
                // BuildKit's control API: HTTP/2 both ways, each call checked.
                Some(scope) => {
                    tokio::select! {
                        _ = grpc_proxy(scope, a, b) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
                None => {
                    let mut a = TokioIo::new(a);
                    let mut b = TokioIo::new(b);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            }
        });
        let (parts, _) = resp.into_parts();
        let mut r = Response::from_parts(parts, empty());
        if !r.headers().contains_key(CONNECTION) {
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        return Ok(r);
    }
    let (parts, incoming) = resp.into_parts();
    Ok(Response::from_parts(parts, incoming.boxed()))
}

/// HTTP/2 flow-control windows of the gRPC proxy (both sides): the build context and
/// layers travel over BuildKit's streams, larger than h2's 64 KiB default windows.
const GRPC_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const GRPC_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Serves BuildKit's gRPC API on the client's upgraded connection (an HTTP/2 server)
/// over the engine's (an HTTP/2 client): every call routed by `buildkit::route`, the
/// `Solve` request read and checked, the rest streamed unchanged (headers, messages,
/// trailers, both ways). Ends when either side closes.
async fn grpc_proxy(
    scope: Arc<policy::Scope>,
    client: hyper::upgrade::Upgraded,
    engine: hyper::upgrade::Upgraded,
) {
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(GRPC_STREAM_WINDOW)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
        .handshake::<_, GateBody>(engine)
        .await;
    let (sender, engine_conn) = match handshake {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "docker gate: BuildKit's HTTP/2 handshake with the engine failed");
            return;
        }
    };
    let svc = hyper::service::service_fn(move |req| {
        let (scope, sender) = (scope.clone(), sender.clone());
        async move { Ok::<_, Infallible>(grpc_call(&scope, sender, req).await) }
    });
    let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(GRPC_STREAM_WINDOW)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
        .serve_connection(client, svc);
    tokio::select! {
        r = server => if let Err(e) = r {
            tracing::debug!(error = %e, "docker gate: BuildKit client connection ended");
        },
        r = engine_conn => if let Err(e) = r {
            tracing::debug!(error = %e, "docker gate: BuildKit engine connection ended");
        },
    }
}

/// A gRPC error answered by the gate itself (a trailers-only response).
fn grpc_status(code: u32, message: &str) -> Response<GateBody> {
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&buildkit::encode_grpc_message(message)) {
        h.insert("grpc-message", v);
    }
    resp
}

/// One gRPC call of the build's client, answered by the engine or refused.
async fn grpc_call(
    scope: &policy::Scope,
    mut sender: hyper::client::conn::http2::SendRequest<GateBody>,
    req: Request<Incoming>,
) -> Response<GateBody> {
    let call = match buildkit::route(req.uri().path()) {
        Ok(c) => c,
        Err(Denied(why)) => return grpc_status(buildkit::PERMISSION_DENIED, &why),
    };
    let (mut parts, body) = req.into_parts();
    let body = match call {
        buildkit::Call::Forward => body.boxed(),
        buildkit::Call::Solve => {
            let bytes = match Limited::new(body, buildkit::MAX_SOLVE_REQUEST)
                .collect()
                .await
            {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return grpc_status(
                        buildkit::INVALID_ARGUMENT,
                        &format!(
                            "runner's Docker gate could not read the BuildKit solve request \
                             (at most {} MiB): {e}",
                            buildkit::MAX_SOLVE_REQUEST >> 20
                        ),
                    )
                }
            };
            if let Err(Denied(why)) = buildkit::check_solve(&bytes, scope) {
                return grpc_status(buildkit::PERMISSION_DENIED, &why);
            }
            // Forwarded as read (exactly what was checked), without a content-length.
            StreamBody::new(futures_util::stream::iter([Ok::<_, hyper::Error>(
                hyper::body::Frame::data(bytes),
            )]))
            .boxed()
        }
    };
    // HTTP/2 needs the scheme and authority the client sent; a client that sent none
    // gets the engine's usual ones.
    if parts.uri.authority().is_none() {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        match hyper::Uri::builder()
            .scheme("http")
            .authority("docker")
            .path_and_query(path)
            .build()
        {
            Ok(u) => parts.uri = u,
            Err(e) => return grpc_status(buildkit::INVALID_ARGUMENT, &e.to_string()),
        }
    }
    let unreachable = |e: hyper::Error| {
        grpc_status(
            buildkit::UNAVAILABLE,
            &format!("runner's Docker gate could not reach the Docker engine: {e}"),
        )
    };
    if let Err(e) = sender.ready().await {
        return unreachable(e);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(BodyExt::boxed),
        Err(e) => unreachable(e),
    }
}
