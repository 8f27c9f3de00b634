//! `routerctl metrics --listen` as an HTTP server that no client can hold: silent clients do not
//! delay a scrape, 200 scrapes at once all succeed, an oversized request head is refused and the
//! server carries on; `/healthz`, content negotiation; and its memory stays flat from 1,000 to
//! 100,000 audit lines.

mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use router_integration::http::{get, request, Reply};
use support::MetricsServer;

fn audit_line(n: usize) -> String {
    let id = format!("{:064x}", n / 5);
    let (role, rule) = if n.is_multiple_of(5) {
        (
            "sandbox",
            "tenants.provider.namespaces[kube-system]".to_string(),
        )
    } else {
        ("container", format!("sandbox[{id}]"))
    };
    format!("{{\"time\":\"2026-12-06T00:00:00Z\",\"outcome\":\"allowed\",\"role\":\"{role}\",\"namespace\":\"k8s.io\",\"id\":\"{:064x}\",\"sandbox_id\":\"{id}\",\"k8s_namespace\":\"kube-system\",\"pod_name\":\"pod-{}\",\"pod_uid\":\"{:032x}\",\"tenant\":\"provider\",\"backend\":\"runc\",\"isolation\":\"container\",\"handler\":\"router\",\"rule\":\"{rule}\",\"reasons\":[\"kube-system is listed in tenant provider\"],\"refused_overrides\":[],\"denials\":[],\"policy_digest\":\"sha256:{:064x}\",\"policy_source\":\"/etc/containerd/runtime-router.toml\",\"decision_us\":{}}}\n", n + 7, n / 5, n / 5, 1, 20 + n % 300)
}

/// Appends audit lines `from..to` to `path`.
fn write_lines(path: &std::path::Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for n in from..to {
        buf += &audit_line(n);
        if buf.len() > 1 << 20 {
            f.write_all(buf.as_bytes()).unwrap();
            buf.clear();
        }
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// A server on a fresh log of `lines` audit lines; keep the dir alive as long as the server.
fn server_on(lines: usize) -> (tempfile::TempDir, MetricsServer) {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("decisions.jsonl");
    write_lines(&log, 0, lines);
    let srv = MetricsServer::start(&log, &[]);
    (d, srv)
}

fn scrape_time(addr: &str) -> Duration {
    let t = Instant::now();
    let r = get(addr, "/metrics").unwrap();
    assert_eq!(r.code, 200, "{}", r.body);
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Scrapes with and without 10 connected clients that send nothing, interleaved so that load
/// from elsewhere falls on both sides alike: the median with them is at most 100 ms above the
/// median without.
#[test]
fn silent_clients_do_not_delay_a_scrape() {
    let (_d, srv) = server_on(1000);
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        base.push(scrape_time(&srv.addr));
        let silent: Vec<TcpStream> = (0..10)
            .map(|_| TcpStream::connect(&srv.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        with.push(scrape_time(&srv.addr));
        drop(silent);
    }
    let (base, with) = (median(base), median(with));
    assert!(
        with <= base + Duration::from_millis(100),
        "scrape took {with:?} with 10 silent clients, {base:?} without"
    );
}

#[test]
fn two_hundred_concurrent_scrapes_all_succeed() {
    let (_d, srv) = server_on(500);
    let start = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let addr = srv.addr.clone();
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let accept = if i % 2 == 0 {
                    "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n"
                } else {
                    ""
                };
                request(&addr, "GET", "/metrics", accept)
            })
        })
        .collect();
    let mut ok = 0;
    for t in threads {
        let Reply { code, head, body } =
            t.join().unwrap().unwrap_or_else(|e| panic!("scrape: {e}"));
        assert_eq!(code, 200, "{head}");
        assert!(
            body.contains("runtime_router_decisions_total{outcome=\"allowed\",role=\"sandbox\",tenant=\"provider\",backend=\"runc\",tier=\"container\",handler=\"router\",rule=\"namespace\"} 100"),
            "{body}"
        );
        ok += 1;
    }
    assert_eq!(ok, 200);
}

#[test]
fn an_oversized_request_head_is_refused_and_the_server_carries_on() {
    let (_d, mut srv) = server_on(10);
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    // the server stops reading at its limit: the rest of the write may be refused
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(head.as_bytes()).is_ok())
    };
    let mut got = Vec::new();
    let read = std::io::Read::read_to_end(&mut s, &mut got);
    let whole_write = writer.join().unwrap();
    let text = String::from_utf8_lossy(&got);
    // answered 431 and closed; or, when the close raced the rest of our write, reset
    match read {
        Ok(_) => assert!(text.starts_with("HTTP/1.1 431"), "{text}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(!whole_write || text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(srv.alive(), "the server died");
    let r = get(&srv.addr, "/healthz").unwrap();
    assert_eq!((r.code, r.body.as_str()), (200, "ok\n"));
}

#[test]
fn paths_methods_and_content_types() {
    let (_d, srv) = server_on(10);
    let Reply { code, head, body } = get(&srv.addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        !body.contains("# EOF") && body.contains("# TYPE runtime_router_decisions_total counter"),
        "{body}"
    );
    let Reply { code, head, body } = request(
        &srv.addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for (method, path, want) in [
        ("GET", "/healthz", 200),
        ("HEAD", "/metrics", 200),
        ("GET", "/", 404),
        ("GET", "/metrics/x", 404),
        ("POST", "/metrics", 405),
        ("DELETE", "/healthz", 405),
    ] {
        let Reply { code, head, .. } = request(&srv.addr, method, path, "").unwrap();
        assert_eq!(code, want, "{method} {path}: {head}");
    }
}

/// Memory of the `--listen` process after 1,000 and after 100,000 lines (20,000 pods): the
/// counters hold kinds, not pods, so PSS and private dirty stay within a few hundred KiB.
/// The process runs a private copy of routerctl: PSS splits a shared page between the processes
/// that map it, so with the test binary's routerctl shared by the other tests' servers, one
/// exiting between the two readings would raise this one's PSS by its share of the text.
#[test]
fn memory_stays_flat_from_1000_to_100000_lines() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("decisions.jsonl");
    write_lines(&log, 0, 1000);
    let own = d.path().join("routerctl-memory");
    std::fs::copy(env!("CARGO_BIN_EXE_routerctl"), &own).unwrap();
    // written back first: a freshly written page mapped by one process counts as private dirty
    std::fs::File::open(&own).unwrap().sync_all().unwrap();
    let srv = MetricsServer::start_binary(&own, &log, &["--interval-ms", "50"]);
    // a scrape after the lines are read: every code path has run once
    let settle = |want: u64| {
        for _ in 0..600 {
            let body = get(&srv.addr, "/metrics").unwrap().body;
            if body.contains(&format!("runtime_router_decisions_total{{outcome=\"allowed\",role=\"container\",tenant=\"provider\",backend=\"runc\",tier=\"container\",handler=\"router\",rule=\"sandbox\"}} {want}")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server never counted {want} container lines");
    };
    settle(800);
    let small = srv.memory_kib();
    write_lines(&log, 1000, 100_000);
    settle(80_000);
    let large = srv.memory_kib();
    eprintln!("after 1,000 lines: PSS {} KiB, private dirty {} KiB; after 100,000 lines: PSS {} KiB, private dirty {} KiB", small.0, small.1, large.0, large.1);
    assert!(
        large.0 <= small.0 + 512,
        "PSS grew from {} to {} KiB",
        small.0,
        large.0
    );
    assert!(
        large.1 <= small.1 + 512,
        "private dirty grew from {} to {} KiB",
        small.1,
        large.1
    );
}
