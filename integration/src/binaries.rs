//! Where the router's binaries are: `$ROUTER_BIN_DIR` if set, else the cargo target directory of
//! the running test executable (`target/<profile>/deps/<test>` → `target/<profile>`), which is why
//! the test command builds `--bins` first.

use std::path::{Path, PathBuf};

/// Environment variable overriding the directory holding the router binaries.
pub const ROUTER_BIN_DIR_ENV: &str = "ROUTER_BIN_DIR";
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

#[cfg(test)]
mod tests {
    use super::*;

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
