//! The DaemonSet's image (deploy/kubernetes/daemonset.yaml): the offline busybox base plus one
//! layer with the router's binaries in `/usr/local/bin`. A binary that is not static gets the
//! shared libraries `ldd` names copied in at their paths, so a plain `cargo build` works too.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::images::{self, ImageSpec};

/// The binaries the image carries.
pub const BINARIES: [&str; 2] = ["containerd-shim-router-v2", "routerctl"];

/// Absolute paths of the shared libraries (and loader) a dynamic binary needs; none for a static one.
fn shared_libs(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| Error::io("run ldd", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect())
}

/// The OCI image-layout archive of image `name` from the binaries in `bin_dir`.
pub fn build(bin_dir: &Path, name: &str) -> Result<Vec<u8>> {
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    for b in BINARIES {
        let p = bin_dir.join(b);
        let bytes = std::fs::read(&p).map_err(|e| {
            Error::io(
                format!(
                    "read {} (build with scripts/build-shim.sh --release)",
                    p.display()
                ),
                e,
            )
        })?;
        files.push((format!("usr/local/bin/{b}"), 0o755, bytes));
        for lib in shared_libs(&p)? {
            let inside = lib.trim_start_matches('/').to_string();
            if !files.iter().any(|(f, _, _)| *f == inside) {
                let bytes = std::fs::read(&lib).map_err(|e| Error::io(format!("read {lib}"), e))?;
                files.push((inside, 0o755, bytes));
            }
        }
    }
    let layer = images::files_layer(&files)?;
    let spec = ImageSpec {
        name: name.to_string(),
        entrypoint: vec!["/usr/local/bin/routerctl".into()],
        cmd: vec!["--help".into()],
    };
    images::build_archive_layers(&[spec], Path::new(images::BUSYBOX_PATH), &[layer])
}
