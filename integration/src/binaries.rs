//! Where the router's binaries are: `$ROUTER_BIN_DIR` if set, else the cargo target directory of
//! the running test executable (`target/<profile>/deps/<test>` → `target/<profile>`), which is why
//! the test command builds `--bins` first. And which containerd the harness runs:
//! `$ROUTER_E2E_CONTAINERD_DIR` (a directory holding `containerd`, `ctr` and
//! `containerd-shim-runc-v2` of one containerd version, e.g. one unpacked by
//! `scripts/install-containerd.sh`), else the system's (`containerd` and `ctr` on PATH,
//! `/usr/bin/containerd-shim-runc-v2`). Every suite goes through these, so one variable switches
//! the whole run to another containerd.

use std::path::{Path, PathBuf};

/// Environment variable overriding the directory holding the router binaries.
pub const ROUTER_BIN_DIR_ENV: &str = "ROUTER_BIN_DIR";
/// Environment variable naming the directory of the containerd binaries to test against.
pub const CONTAINERD_DIR_ENV: &str = "ROUTER_E2E_CONTAINERD_DIR";
/// containerd's Go runc shim of the system's containerd.
pub const SYSTEM_RUNC_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
/// File name of containerd's Go runc shim.
pub const RUNC_SHIM_BINARY: &str = "containerd-shim-runc-v2";
/// The router shim's binary name.
pub const ROUTER_SHIM_BINARY: &str = "containerd-shim-router-v2";
/// The operator tool's binary name.
pub const ROUTERCTL_BINARY: &str = "routerctl";

/// The directory expected to hold `containerd-shim-router-v2` and `routerctl`. It may not contain
/// them (for example before the shim is built); see [`router_shim_path`].
pub fn router_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ROUTER_BIN_DIR_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    profile_dir_of(&exe)
}

/// `target/<profile>/deps/x` and `target/<profile>/examples/x` → `target/<profile>`;
/// `target/<profile>/x` → `target/<profile>`.
fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let parent = exe.parent()?;
    if parent
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        parent.parent().map(Path::to_path_buf)
    } else {
        Some(parent.to_path_buf())
    }
}

/// The router shim binary, if it has been built.
pub fn router_shim_path() -> Option<PathBuf> {
    router_bin_dir()
        .map(|d| d.join(ROUTER_SHIM_BINARY))
        .filter(|p| p.is_file())
}

/// `routerctl`, if it has been built.
pub fn routerctl_path() -> Option<PathBuf> {
    router_bin_dir()
        .map(|d| d.join(ROUTERCTL_BINARY))
        .filter(|p| p.is_file())
}

/// `$ROUTER_E2E_CONTAINERD_DIR`, if set and non-empty.
pub fn containerd_dir() -> Option<PathBuf> {
    std::env::var_os(CONTAINERD_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The containerd binary to run: `<dir>/containerd`, else `containerd` on PATH.
pub fn containerd_path() -> PathBuf {
    tool(containerd_dir().as_deref(), "containerd", "containerd")
}

/// The `ctr` of the same containerd: `<dir>/ctr`, else `ctr` on PATH.
pub fn ctr_path() -> PathBuf {
    tool(containerd_dir().as_deref(), "ctr", "ctr")
}

/// The same containerd's Go runc shim (what the Kata stand-in is copied from, and what a `shim`
/// backend naming `containerd-shim-runc-v2` resolves to on the harness's PATH).
pub fn runc_shim_path() -> PathBuf {
    tool(
        containerd_dir().as_deref(),
        RUNC_SHIM_BINARY,
        SYSTEM_RUNC_SHIM,
    )
}

fn tool(dir: Option<&Path>, name: &str, fallback: &str) -> PathBuf {
    match dir {
        Some(d) => d.join(name),
        None => PathBuf::from(fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_come_from_the_containerd_dir() {
        let d = Path::new("/opt/c/usr/bin");
        assert_eq!(tool(Some(d), "ctr", "ctr"), d.join("ctr"));
        assert_eq!(
            tool(None, RUNC_SHIM_BINARY, SYSTEM_RUNC_SHIM),
            PathBuf::from(SYSTEM_RUNC_SHIM)
        );
    }

    #[test]
    fn profile_dir_from_test_exe() {
        assert_eq!(
            profile_dir_of(Path::new("/t/target/debug/deps/smoke-123")),
            Some(PathBuf::from("/t/target/debug"))
        );
        assert_eq!(
            profile_dir_of(Path::new("/t/target/release/examples/demo")),
            Some(PathBuf::from("/t/target/release"))
        );
        assert_eq!(
            profile_dir_of(Path::new("/t/target/release/bench")),
            Some(PathBuf::from("/t/target/release"))
        );
    }
}
