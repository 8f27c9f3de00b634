//! `routerctl metrics --audit-log FILE [--listen ADDR]`: Prometheus text exposition of the routing
//! decisions in the audit log.
//!
//! - `runtime_router_decisions_total{outcome,role,tenant,backend,rule}` counts audit lines
//!   (`outcome` is `allowed` or `refused`; a refusal before a tenant was known has `tenant=""`);
//! - `runtime_router_decision_duration_seconds{outcome,role}` is a histogram of the lines'
//!   `decision_us`;
//! - `runtime_router_audit_lines_invalid_total` counts lines that are not an audit entry.
//!
//! Without `--listen` the file is read once and printed. With `--listen` a loopback or pod address
//! serves `GET /metrics` and the log is followed: new complete lines are counted as they are
//! appended (a line still being written is held until its newline), and when logrotate renames
//! the file (the next `start` creates a new one) the old file is read to its end, kept open for
//! late writers until the following rotation, and the new file is read from its start. So every
//! line counts exactly once. A file that shrinks in place (copytruncate) is read again from 0.
//! The log is polled by path (`--interval-ms`): a file created and renamed away between two
//! polls is never opened, so its lines are not counted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the decision-time histogram, in microseconds.
const BUCKETS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// The counters built from audit lines.
#[derive(Debug, Default)]
pub struct Stats {
    /// (outcome, role, tenant, backend, rule) → lines.
    pub decisions: BTreeMap<[String; 5], u64>,
    /// (outcome, role) → (bucket counts, sum µs, count).
    durations: BTreeMap<[String; 2], ([u64; BUCKETS_US.len()], u64, u64)>,
    pub invalid: u64,
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

impl Stats {
    /// Counts one line (without its newline). Blank lines are ignored.
    pub fn add_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                self.invalid += 1;
                return;
            }
        };
        let outcome = field(&v, "outcome");
        if outcome.is_empty() {
            self.invalid += 1;
            return;
        }
        let role = field(&v, "role");
        let key = [
            outcome.clone(),
            role.clone(),
            field(&v, "tenant"),
            field(&v, "backend"),
            field(&v, "rule"),
        ];
        *self.decisions.entry(key).or_default() += 1;
        let us = v.get("decision_us").and_then(|x| x.as_u64()).unwrap_or(0);
        let h = self
            .durations
            .entry([outcome, role])
            .or_insert(([0; BUCKETS_US.len()], 0, 0));
        for (i, b) in BUCKETS_US.iter().enumerate() {
            if us <= *b {
                h.0[i] += 1;
            }
        }
        h.1 += us;
        h.2 += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP runtime_router_decisions_total Routing decisions recorded in the audit log (one per line).\n");
        s.push_str("# TYPE runtime_router_decisions_total counter\n");
        for (k, n) in &self.decisions {
            s.push_str(&format!(
                "runtime_router_decisions_total{{outcome=\"{}\",role=\"{}\",tenant=\"{}\",backend=\"{}\",rule=\"{}\"}} {n}\n",
                esc(&k[0]), esc(&k[1]), esc(&k[2]), esc(&k[3]), esc(&k[4])
            ));
        }
        s.push_str("# HELP runtime_router_decision_duration_seconds Time a decision took (read spec and policy, decide).\n");
        s.push_str("# TYPE runtime_router_decision_duration_seconds histogram\n");
        for (k, (b, sum, count)) in &self.durations {
            let labels = format!("outcome=\"{}\",role=\"{}\"", esc(&k[0]), esc(&k[1]));
            for (i, le) in BUCKETS_US.iter().enumerate() {
                s.push_str(&format!(
                    "runtime_router_decision_duration_seconds_bucket{{{labels},le=\"{}\"}} {}\n",
                    *le as f64 / 1e6,
                    b[i]
                ));
            }
            s.push_str(&format!(
                "runtime_router_decision_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n"
            ));
            s.push_str(&format!(
                "runtime_router_decision_duration_seconds_sum{{{labels}}} {}\n",
                *sum as f64 / 1e6
            ));
            s.push_str(&format!(
                "runtime_router_decision_duration_seconds_count{{{labels}}} {count}\n"
            ));
        }
        s.push_str("# HELP runtime_router_audit_lines_invalid_total Audit log lines that are not a decision entry.\n");
        s.push_str("# TYPE runtime_router_audit_lines_invalid_total counter\n");
        s.push_str(&format!(
            "runtime_router_audit_lines_invalid_total {}\n",
            self.invalid
        ));
        s
    }
}

/// Label value escaping of the text format: `\`, `"` and newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One open audit file and how far it has been counted.
struct Reader {
    file: File,
    ino: (u64, u64),
    offset: u64,
    partial: Vec<u8>,
}

impl Reader {
    fn open(path: &Path) -> std::io::Result<Reader> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Reader {
            file,
            ino: (m.dev(), m.ino()),
            offset: 0,
            partial: Vec::new(),
        })
    }

    /// Counts the complete lines appended since the last call.
    fn drain(&mut self, stats: &mut Stats) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len < self.offset {
            // truncated in place: what is there now is new
            self.offset = 0;
            self.partial.clear();
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut r = BufReader::new((&self.file).take(len - self.offset));
        loop {
            let mut buf = std::mem::take(&mut self.partial);
            let n = r.read_until(b'\n', &mut buf)?;
            self.offset += n as u64;
            if buf.last() == Some(&b'\n') {
                buf.pop();
                stats.add_line(&buf);
            } else {
                self.partial = buf;
                return Ok(());
            }
        }
    }
}

/// Follows one audit log path across appends and renames.
pub struct Follower {
    path: PathBuf,
    current: Option<Reader>,
    /// The file renamed away at the last rotation: still read for writers that had it open.
    rotated: Option<Reader>,
    pub stats: Stats,
}

impl Follower {
    pub fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_owned(),
            current: None,
            rotated: None,
            stats: Stats::default(),
        }
    }

    /// Counts everything new; switches to a new file at the path after a rotation.
    pub fn poll(&mut self) -> std::io::Result<()> {
        if let Some(old) = &mut self.rotated {
            old.drain(&mut self.stats)?;
        }
        if let Some(cur) = &mut self.current {
            cur.drain(&mut self.stats)?;
        }
        let at_path = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(at_path) = at_path else {
            return Ok(()); // renamed, no new file yet: keep the one we have
        };
        if self.current.as_ref().map(|c| c.ino) == Some(at_path) {
            return Ok(());
        }
        let mut next = match Reader::open(&self.path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        next.drain(&mut self.stats)?;
        // the previous file's last writers are still read until the next rotation
        self.rotated = self.current.take();
        self.current = Some(next);
        Ok(())
    }
}

/// `routerctl metrics`.
pub fn run(audit_log: &Path, listen: Option<&str>, interval: Duration) -> u8 {
    let mut f = Follower::new(audit_log);
    if let Err(e) = f.poll() {
        eprintln!("error: {}: {e}", audit_log.display());
        return 1;
    }
    let Some(addr) = listen else {
        if !audit_log.exists() {
            eprintln!(
                "warning: {}: no audit log yet: no decisions",
                audit_log.display()
            );
        }
        let text = f.stats.render();
        let mut o = std::io::stdout();
        if o.write_all(text.as_bytes()).is_err() {
            return 0;
        }
        return 0;
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    match listener.local_addr() {
        Ok(a) => out!("serving http://{a}/metrics from {}", audit_log.display()),
        Err(_) => out!("serving /metrics on {addr}"),
    }
    let shared = Arc::new(Mutex::new(f));
    let follower = Arc::clone(&shared);
    let path = audit_log.to_owned();
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        if let Ok(mut f) = follower.lock() {
            if let Err(e) = f.poll() {
                eprintln!("warning: {}: {e}", path.display());
            }
        }
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = serve(conn, &shared) {
            eprintln!("warning: metrics request: {e}");
        }
    }
    0
}

/// Answers one HTTP/1.x request: `GET /metrics` → the exposition, anything else → 404.
fn serve(mut conn: TcpStream, shared: &Mutex<Follower>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = if (method == "GET" || method == "HEAD") && path == "/metrics" {
        let text = match shared.lock() {
            Ok(mut f) => {
                if let Err(e) = f.poll() {
                    eprintln!("warning: audit log: {e}");
                }
                f.stats.render()
            }
            Err(_) => String::new(),
        };
        ("200 OK", text)
    } else {
        ("404 Not Found", "not found: try /metrics\n".to_string())
    };
    let hdr = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(hdr.as_bytes())?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(outcome: &str, tenant: &str, us: u64) -> String {
        format!("{{\"outcome\":\"{outcome}\",\"role\":\"sandbox\",\"tenant\":\"{tenant}\",\"backend\":\"runc\",\"rule\":\"r\",\"decision_us\":{us}}}\n")
    }

    #[test]
    fn follows_appends_partial_lines_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let mut f = Follower::new(&p);
        f.poll().unwrap(); // no file yet
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .unwrap();
        w.write_all(line("allowed", "a", 30).as_bytes()).unwrap();
        let half = line("refused", "b", 7);
        w.write_all(&half.as_bytes()[..10]).unwrap();
        f.poll().unwrap();
        assert_eq!(f.stats.decisions.values().sum::<u64>(), 1);
        w.write_all(&half.as_bytes()[10..]).unwrap();
        // rotate: rename, a late write to the old file, then a new file
        std::fs::rename(&p, d.path().join("a.jsonl.1")).unwrap();
        f.poll().unwrap();
        assert_eq!(f.stats.decisions.values().sum::<u64>(), 2);
        std::fs::write(&p, line("allowed", "c", 2_000_000)).unwrap();
        f.poll().unwrap();
        w.write_all(line("allowed", "late", 1).as_bytes()).unwrap();
        f.poll().unwrap();
        f.poll().unwrap();
        assert_eq!(f.stats.decisions.values().sum::<u64>(), 4);
        let text = f.stats.render();
        assert!(text.contains("runtime_router_decisions_total{outcome=\"refused\",role=\"sandbox\",tenant=\"b\",backend=\"runc\",rule=\"r\"} 1"), "{text}");
        assert!(text.contains("runtime_router_decision_duration_seconds_bucket{outcome=\"allowed\",role=\"sandbox\",le=\"0.00001\"} 1"), "{text}");
        assert!(text.contains("runtime_router_decision_duration_seconds_bucket{outcome=\"allowed\",role=\"sandbox\",le=\"1\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3"), "{text}");
        std::fs::write(d.path().join("x"), "").unwrap();
        f.stats.add_line(b"not json");
        assert_eq!(f.stats.invalid, 1);
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
