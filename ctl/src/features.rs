//! `routerctl node-features [--config FILE] [--output DIR]`: Node Feature Discovery local-feature
//! lines, one per isolation tier this node can really serve with the policy's backends.
//!
//! A tier is served when at least one backend of that isolation is usable here:
//! - a `builtin` backend: its OCI runtime is executable and answers `--version` (runsc too: a
//!   runsc that cannot run reports nothing, so `tier.sandbox` needs a working one);
//! - a `shim` backend: its binary is found (absolute path or PATH);
//! - and for the `vm` tier also `/dev/kvm` opened read-write (what Kata's hypervisors need).
//!
//! Lines are `runtime-router.io/tier.<isolation>=true`, only for the tiers served (a tier the
//! policy names but the node cannot serve is reported on stderr with the reason; NFD drops a label
//! whose line disappears). `--output DIR` writes them as the file `DIR/runtime-router` (NFD's
//! `features.d` format: one `name=value` per line), atomically.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use router_config::{BackendKind, Isolation, Policy};

use crate::host;

/// The label prefix of every feature.
pub const PREFIX: &str = "runtime-router.io/tier.";
/// File name written in `--output DIR`.
pub const FILE_NAME: &str = "runtime-router";

/// Runs `program --version` with a bounded wait; true when it exits 0.
fn answers_version(program: &Path) -> bool {
    let Ok(mut child) = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// For each tier the policy names: whether this node can serve it, and why.
pub fn tiers(policy: &Policy) -> Vec<(Isolation, bool, String)> {
    let mut out: Vec<(Isolation, bool, String)> = Vec::new();
    for iso in [Isolation::Container, Isolation::Sandbox, Isolation::Vm] {
        let backends: Vec<_> = policy
            .backends
            .values()
            .filter(|b| b.isolation == iso)
            .collect();
        if backends.is_empty() {
            continue;
        }
        let mut why = Vec::new();
        let mut ok = false;
        for b in backends {
            let usable = match &b.kind {
                BackendKind::Builtin { runtime, .. } => {
                    match host::find_program(&runtime.to_string_lossy()) {
                        Some(p) if answers_version(&p) => Ok(p),
                        Some(p) => Err(format!("{} does not answer --version", p.display())),
                        None => Err(format!("{} not found", runtime.display())),
                    }
                }
                BackendKind::Shim { binary, .. } => match host::find_program(binary) {
                    Some(p) => Ok(p),
                    None => Err(format!("{binary} not found")),
                },
            };
            let usable = usable.and_then(|p| {
                if iso == Isolation::Vm && !kvm_usable() {
                    Err(format!("{} present but /dev/kvm not usable", p.display()))
                } else {
                    Ok(p)
                }
            });
            match usable {
                Ok(p) => {
                    ok = true;
                    why.push(format!("backend {}: {}", b.name, p.display()));
                }
                Err(e) => why.push(format!("backend {}: {e}", b.name)),
            }
        }
        out.push((iso, ok, why.join("; ")));
    }
    out
}

/// The feature lines for `tiers`.
pub fn lines(tiers: &[(Isolation, bool, String)]) -> String {
    tiers
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(iso, _, _)| format!("{PREFIX}{}=true\n", iso.as_str()))
        .collect()
}

/// `routerctl node-features`.
pub fn run(config: Option<&Path>, output: Option<&Path>) -> u8 {
    let policy = match router_config::load(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("no node features written: the policy is invalid");
            return 1;
        }
    };
    let t = tiers(&policy);
    for (iso, ok, why) in &t {
        eprintln!(
            "{iso}: {} ({why})",
            if *ok { "served" } else { "not served" }
        );
    }
    let text = lines(&t);
    match output {
        None => {
            for l in text.lines() {
                out!("{l}");
            }
        }
        Some(dir) => {
            let path: PathBuf = dir.join(FILE_NAME);
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: {}: {e}", dir.display());
                return 1;
            }
            if let Err(e) = crate::policy::write_atomic(&path, text.as_bytes(), 0o644, dir) {
                eprintln!("error: {e}");
                return 1;
            }
            out!("wrote {}", path.display());
        }
    }
    0
}
