//! The `--listen` HTTP server, on hyper: `GET /metrics` (OpenMetrics when the client asks for it
//! in `Accept`, else the Prometheus text format 0.0.4) and `GET /healthz`.
//!
//! Connections are served concurrently on a small tokio runtime. Bounds, so that no client can
//! hold the server: at most `max_connections` open at once (further ones wait in the kernel's
//! accept queue until one closes), a request's head must arrive within [`HEADER_TIMEOUT`], a
//! connection lives at most [`CONNECTION_TIMEOUT`], and a request head larger than
//! [`MAX_HEAD_BYTES`] is answered `431` and the connection closed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::follow::Follower;

/// Time a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open, however it behaves.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head read (hyper's read buffer); more is a `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics exposition rewritten as the Prometheus text format 0.0.4: a counter's HELP
/// and TYPE lines take the sample name (`<name>_total`), `# UNIT` and `# EOF` go. Sample lines
/// are the same in both formats.
pub fn to_text_004(openmetrics: &str) -> String {
    let mut counters = Vec::new();
    for l in openmetrics.lines() {
        if let Some(name) = l
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            counters.push(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(l));
        out.push('\n');
    }
    out
}

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn handle(
    req: Request<Incoming>,
    follower: Arc<Mutex<Follower>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let r = match req.uri().path() {
        "/metrics" | "/healthz" if !get => {
            reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n".into())
        }
        "/healthz" => reply(StatusCode::OK, PLAIN, "ok\n".into()),
        "/metrics" => {
            let om = wants_openmetrics(&req);
            // file reads and encoding off the async workers
            let text = tokio::task::spawn_blocking(move || {
                let mut f = follower.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.poll() {
                    eprintln!("warning: audit log: {e}");
                }
                f.stats.render()
            })
            .await
            .unwrap_or_default();
            if om {
                reply(StatusCode::OK, OPENMETRICS, text)
            } else {
                reply(StatusCode::OK, TEXT_004, to_text_004(&text))
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics or /healthz\n".into(),
        ),
    };
    Ok(r)
}

/// Serves `listener` until the process ends.
pub fn serve(
    listener: std::net::TcpListener,
    follower: Arc<Mutex<Follower>>,
    max_connections: usize,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
        loop {
            // a connection is accepted only when it can be served
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return Ok(());
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // e.g. EMFILE: back off instead of spinning
                    eprintln!("warning: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let follower = Arc::clone(&follower);
            tokio::spawn(async move {
                let _slot = slot;
                let svc = hyper::service::service_fn(move |req| handle(req, Arc::clone(&follower)));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), svc);
                // errors are the client's (reset, timeout, oversized head): nothing to report
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            });
        }
    })
}
