//! Unit tests of the metrics: following across rotations, bounded labels, the 0.0.4 rewrite.

use super::stats::Stats;
use super::*;
use router_config::auditfiles::{lock_path, rotated_path};

fn line(outcome: &str, tenant: &str, us: u64) -> String {
    format!("{{\"outcome\":\"{outcome}\",\"role\":\"sandbox\",\"tenant\":\"{tenant}\",\"backend\":\"runc\",\"isolation\":\"container\",\"handler\":\"router\",\"rule\":\"default_tenant\",\"decision_us\":{us}}}\n")
}

/// Sum of `runtime_router_decisions_total` samples.
fn total(f: &Follower) -> u64 {
    f.stats
        .render()
        .lines()
        .filter(|l| l.starts_with("runtime_router_decisions_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn append(p: &std::path::Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The router's rotation (shim `audit::rotate`), under its lock.
fn router_rotate(p: &std::path::Path, keep: u32) {
    let lock = std::fs::File::create(lock_path(p)).unwrap();
    let _g = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    for n in (1..keep).rev() {
        let _ = std::fs::rename(rotated_path(p, n), rotated_path(p, n + 1));
    }
    std::fs::rename(p, rotated_path(p, 1)).unwrap();
}

#[test]
fn follows_appends_partial_lines_and_a_logrotate_rename() {
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
    assert_eq!(total(&f), 1);
    w.write_all(&half.as_bytes()[10..]).unwrap();
    // logrotate: rename, a late write to the old file, then a new file
    std::fs::rename(&p, d.path().join("a.jsonl-20261206")).unwrap();
    f.poll().unwrap();
    assert_eq!(total(&f), 2);
    std::fs::write(&p, line("allowed", "c", 2_000_000)).unwrap();
    f.poll().unwrap();
    w.write_all(line("allowed", "late", 1).as_bytes()).unwrap();
    f.poll().unwrap();
    f.poll().unwrap();
    assert_eq!(total(&f), 4);
    let text = f.stats.render();
    assert!(text.contains("runtime_router_decisions_total{outcome=\"refused\",role=\"sandbox\",tenant=\"b\",backend=\"runc\",tier=\"container\",handler=\"router\",rule=\"default_tenant\"} 1"), "{text}");
    assert!(text.contains("runtime_router_decision_duration_seconds_bucket{le=\"0.00001\",outcome=\"allowed\",role=\"sandbox\"} 1"), "{text}");
    assert!(text.contains("runtime_router_decision_duration_seconds_bucket{le=\"1.0\",outcome=\"allowed\",role=\"sandbox\"} 2"), "{text}");
    f.stats.add_line(b"not json");
    f.stats.add_line(b"{\"outcome\":\"maybe\"}");
    assert!(f
        .stats
        .render()
        .contains("runtime_router_audit_lines_invalid_total 2"));
}

#[test]
fn several_router_rotations_between_two_polls_count_every_line_once() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("d.jsonl");
    // history from before the follower started is not counted
    append(&p, &line("allowed", "old", 5));
    router_rotate(&p, 10);
    let mut f = Follower::new(&p);
    f.poll().unwrap();
    // the first file, written and rotated away twice between two polls, is counted
    let mut written = 0;
    for _ in 0..2 {
        append(&p, &line("allowed", "t", 5));
        written += 1;
        router_rotate(&p, 10);
    }
    f.poll().unwrap();
    assert_eq!(total(&f), written);
    for round in 0..4 {
        // `round` rotations, each after three lines, then a poll
        for _ in 0..=round {
            for _ in 0..3 {
                append(&p, &line("allowed", "t", 5));
                written += 1;
            }
            f.poll().unwrap_or_else(|e| panic!("{e}"));
            append(&p, &line("allowed", "t", 5));
            written += 1;
            router_rotate(&p, 10);
            for _ in 0..2 {
                append(&p, &line("refused", "t", 5));
                written += 1;
            }
        }
        // the polls above saw at most the first rotation; this one catches up on the rest
        f.poll().unwrap();
        assert_eq!(total(&f), written, "round {round}");
    }
    // five rotations without any poll in between
    for _ in 0..5 {
        append(&p, &line("allowed", "u", 5));
        written += 1;
        router_rotate(&p, 10);
    }
    f.poll().unwrap();
    f.poll().unwrap();
    assert_eq!(total(&f), written);
}

#[test]
fn label_values_are_kinds_and_names_never_ids() {
    let s = Stats::new();
    let id = "f".repeat(64);
    for l in [
        format!("{{\"outcome\":\"allowed\",\"role\":\"container\",\"tenant\":\"t\",\"backend\":\"kata\",\"isolation\":\"vm\",\"handler\":\"router-vm\",\"rule\":\"sandbox[{id}]\"}}"),
        "{\"outcome\":\"refused\",\"role\":\"sandbox\",\"tenant\":\"t\",\"rule\":\"deny:sysctls\"}".to_string(),
        "{\"outcome\":\"refused\",\"role\":\"odd\",\"tenant\":\"a b\\\"c\",\"isolation\":\"huge\",\"rule\":\"tenants.t.namespaces[team-*]\"}".to_string(),
    ] {
        s.add_line(l.as_bytes());
    }
    let text = s.render();
    assert!(!text.contains(&id), "{text}");
    for want in [
        "{outcome=\"allowed\",role=\"container\",tenant=\"t\",backend=\"kata\",tier=\"vm\",handler=\"router-vm\",rule=\"sandbox\"} 1",
        "{outcome=\"refused\",role=\"sandbox\",tenant=\"t\",backend=\"\",tier=\"\",handler=\"\",rule=\"deny:sysctls\"} 1",
        "{outcome=\"refused\",role=\"other\",tenant=\"invalid\",backend=\"\",tier=\"invalid\",handler=\"\",rule=\"namespace\"} 1",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

#[test]
fn text_004_names_counters_by_their_samples() {
    let s = Stats::new();
    s.add_line(line("allowed", "a", 3).trim_end().as_bytes());
    let om = s.render();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE runtime_router_decisions counter"),
        "{om}"
    );
    let t = to_text_004(&om);
    assert!(!t.contains("# EOF"), "{t}");
    assert!(
        t.contains("# TYPE runtime_router_decisions_total counter\n"),
        "{t}"
    );
    assert!(
        t.contains("# HELP runtime_router_audit_lines_invalid_total "),
        "{t}"
    );
    assert!(
        t.contains("# TYPE runtime_router_decision_duration_seconds histogram\n"),
        "{t}"
    );
    // samples are untouched
    let samples = |x: &str| {
        x.lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(samples(&om), samples(&t));
}
