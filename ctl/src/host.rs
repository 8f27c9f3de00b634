//! What this host can offer: isolation tiers (KVM for Kata, runsc for gVisor) and program lookup.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Finds `program` as the shim would: an absolute path as is, else the first executable on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this host's kernel enforces AppArmor (as the shim reads it at `start`): then a task
/// without a profile runs unconfined.
pub fn apparmor_enabled() -> bool {
    use router_core::podsecurity::{apparmor_enabled_from, APPARMOR_ENABLED_PATH};
    std::fs::read(APPARMOR_ENABLED_PATH).is_ok_and(|b| apparmor_enabled_from(&b))
}

/// One line per tier: whether the host can offer it, and why.
pub fn tiers() -> Vec<(String, bool, String)> {
    let kvm_dev = Path::new("/dev/kvm");
    let kvm_open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_dev);
    let kvm = kvm_open.is_ok();
    let runsc = find_program("runsc");
    let runc = find_program("runc");
    vec![
        (
            "vm".to_string(),
            kvm,
            match (&kvm_open, kvm_dev.exists()) {
                (Ok(_), _) => "/dev/kvm present: Kata VMs can run".to_string(),
                (Err(e), true) => format!("/dev/kvm present but not usable ({e}): no Kata VMs"),
                (Err(_), false) => "no /dev/kvm: Kata VMs cannot run here".to_string(),
            },
        ),
        (
            "sandbox".to_string(),
            runsc.is_some(),
            match &runsc {
                Some(p) => format!("runsc at {}: gVisor sandboxes can run", p.display()),
                None => "runsc not on PATH: no gVisor".to_string(),
            },
        ),
        (
            "container".to_string(),
            runc.is_some(),
            match &runc {
                Some(p) => format!("runc at {}", p.display()),
                None => "runc not on PATH".to_string(),
            },
        ),
    ]
}
