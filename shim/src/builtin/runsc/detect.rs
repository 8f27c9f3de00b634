//! Recognising runsc: [`is_runsc`] tells the daemon to use the runsc rules for a backend's
//! runtime, from its path alone (no process spawned); [`check_platform`] asks the binary which
//! platforms it has, so a policy naming one it lacks (`--platform=systrap` on the 2022 runsc
//! Debian ships) is refused with a clear reason instead of failing every pod at create.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::RunscError;

/// The runsc binary's file name.
const RUNSC: &str = "runsc";

/// Whether `runtime` (an absolute path, or a name looked up on `PATH`) is runsc: its file name,
/// after following symlinks, is `runsc`. A wrapper script under another name is not recognised.
pub fn is_runsc(runtime: &Path) -> bool {
    let resolved = resolve(runtime);
    let path = resolved.as_deref().unwrap_or(runtime);
    let real = std::fs::canonicalize(path).ok();
    let named = |p: &Path| p.file_name() == Some(OsStr::new(RUNSC));
    named(path) || real.as_deref().is_some_and(named)
}

/// `runtime` itself if it has a directory part, else the first executable match on `PATH`.
fn resolve(runtime: &Path) -> Option<PathBuf> {
    if runtime.components().count() > 1 || runtime.is_absolute() {
        return Some(runtime.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(runtime))
        .find(|p| p.is_file())
}

/// The platform named by `runtime_args` (`--platform=X`, `-platform=X` or `--platform X`),
/// with the flag as written.
pub fn platform_arg(runtime_args: &[String]) -> Option<(String, String)> {
    let mut it = runtime_args.iter();
    while let Some(a) = it.next() {
        let bare = a.trim_start_matches('-');
        if a.starts_with('-') && bare == "platform" {
            let value = it.next()?;
            return Some((format!("{a} {value}"), value.clone()));
        }
        if let Some(v) = bare
            .strip_prefix("platform=")
            .filter(|_| a.starts_with('-'))
        {
            return Some((a.clone(), v.to_owned()));
        }
    }
    None
}

/// Parse `runsc help platforms` (one platform per line).
pub fn parse_platforms(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(' '))
        .map(str::to_owned)
        .collect()
}

/// The platforms `runtime` supports (`runsc help platforms`). Waits for its own child: call it
/// from the short-lived `start` action or `routerctl`, not inside the daemon (whose subreaper
/// collects every child).
pub fn platforms(runtime: &Path) -> Result<Vec<String>, RunscError> {
    let out = Command::new(runtime)
        .args(["help", "platforms"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunscError::Spawn {
            program: runtime.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let list = parse_platforms(&text);
    if !out.status.success() || list.is_empty() {
        return Err(RunscError::Command {
            what: "help platforms".into(),
            message: format!(
                "{} (exit {:?})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status.code()
            ),
        });
    }
    Ok(list)
}

/// Refuse `runtime_args` naming a platform `runtime` does not have. No `--platform` flag means
/// runsc's default (ptrace), always present.
pub fn check_platform(runtime: &Path, runtime_args: &[String]) -> Result<(), RunscError> {
    let Some((flag, platform)) = platform_arg(runtime_args) else {
        return Ok(());
    };
    let available = platforms(runtime)?;
    if available.contains(&platform) {
        return Ok(());
    }
    Err(RunscError::UnknownPlatform {
        program: runtime.to_owned(),
        flag,
        platform,
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runsc_is_recognised_by_name_and_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("runsc");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        let link = dir.path().join("gvisor-runtime");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let other = dir.path().join("runc");
        std::fs::write(&other, "#!/bin/sh\n").unwrap();
        assert!(is_runsc(&real));
        assert!(is_runsc(&link));
        assert!(!is_runsc(&other));
        assert!(!is_runsc(Path::new("/usr/bin/runc")));
        assert!(!is_runsc(Path::new("/usr/bin/runsc-wrapper")));
        // A missing path is judged by its name.
        assert!(is_runsc(Path::new("/nonexistent/dir/runsc")));
    }

    #[test]
    fn the_platform_flag_is_found_in_every_spelling() {
        assert_eq!(
            platform_arg(&strings(&["--platform=systrap", "--ignore-cgroups"])),
            Some(("--platform=systrap".into(), "systrap".into()))
        );
        assert_eq!(
            platform_arg(&strings(&["--network=host", "-platform", "kvm"])),
            Some(("-platform kvm".into(), "kvm".into()))
        );
        assert_eq!(platform_arg(&strings(&["--network=host"])), None);
        assert_eq!(platform_arg(&strings(&["--platform"])), None);
        assert_eq!(platform_arg(&strings(&["platform=kvm"])), None);
    }

    #[test]
    fn help_platforms_output_is_parsed() {
        assert_eq!(parse_platforms("ptrace\nkvm\n"), ["ptrace", "kvm"]);
        assert!(parse_platforms("Usage: runsc <flags>\n\n").is_empty());
    }

    /// Against the host's runsc (Debian's 20221219 build has ptrace and kvm, not systrap).
    #[test]
    fn a_platform_this_runsc_lacks_is_refused_by_name() {
        let runsc = Path::new("/usr/bin/runsc");
        assert!(check_platform(runsc, &strings(&["--platform=ptrace"])).is_ok());
        assert!(check_platform(runsc, &strings(&["--network=host"])).is_ok());
        let available = platforms(runsc).unwrap();
        if available.iter().any(|p| p == "systrap") {
            return; // a newer runsc: systrap is fine there.
        }
        let err = check_platform(runsc, &strings(&["--platform=systrap"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--platform=systrap"), "{msg}");
        assert!(msg.contains("ptrace"), "{msg}");
        let err = check_platform(
            Path::new("/nonexistent/runsc"),
            &strings(&["--platform=kvm"]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/runsc"), "{err}");
    }
}
