//! Writes the DaemonSet's OCI image archive offline: the host's static busybox (the image
//! builder's base layer: `sh`, `nsenter`, `sleep`...) plus one layer with the router's static
//! binaries in `/usr/local/bin` (what `routerctl install --from /usr/local/bin` copies to the
//! node). Built from `scripts/build-shim.sh --release` output (the shim is static; a binary that is
//! not, like `routerctl` there, gets the shared libraries `ldd` names copied in at their paths):
//!
//! ```sh
//! scripts/build-shim.sh --release
//! cargo run -p router-integration --example daemonset_image -- \
//!     --bin-dir target/release --out runtime-router-image.tar [--name docker.io/local/runtime-router:0.1.0]
//! ctr -n k8s.io images import runtime-router-image.tar    # on each node, or push it to a registry
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use router_integration::images::{self, ImageSpec};

/// The binaries the image carries.
const BINARIES: [&str; 2] = ["containerd-shim-router-v2", "routerctl"];

/// Absolute paths of the shared libraries (and loader) a dynamic binary needs; none for a static one.
fn shared_libs(bin: &std::path::Path) -> Result<Vec<String>> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .context("run ldd")?;
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

fn main() -> Result<()> {
    let mut bin_dir = PathBuf::from("target/release");
    let mut out = PathBuf::from("runtime-router-image.tar");
    let mut name = format!("docker.io/local/runtime-router:{}", env!("CARGO_PKG_VERSION"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--bin-dir" => bin_dir = PathBuf::from(val()?),
            "--out" => out = PathBuf::from(val()?),
            "--name" => name = val()?,
            "-h" | "--help" => {
                println!("usage: daemonset_image [--bin-dir DIR] [--out FILE] [--name REF]");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    let mut files = Vec::new();
    for b in BINARIES {
        let p = bin_dir.join(b);
        let bytes = std::fs::read(&p).with_context(|| {
            format!(
                "read {} (build with scripts/build-shim.sh --release)",
                p.display()
            )
        })?;
        files.push((format!("usr/local/bin/{b}"), 0o755, bytes));
        for lib in shared_libs(&p)? {
            if !files.iter().any(|(f, _, _)| *f == lib[1..]) {
                let bytes = std::fs::read(&lib).with_context(|| format!("read {lib}"))?;
                files.push((lib[1..].to_string(), 0o755, bytes));
            }
        }
    }
    let layer = images::files_layer(&files)?;
    let spec = ImageSpec {
        name: name.clone(),
        entrypoint: vec!["/usr/local/bin/routerctl".into()],
        cmd: vec!["--help".into()],
    };
    let bytes =
        images::build_archive_layers(&[spec], std::path::Path::new(images::BUSYBOX_PATH), &[layer])?;
    std::fs::write(&out, &bytes).with_context(|| format!("write {}", out.display()))?;
    println!("wrote {} ({name}, {} bytes)", out.display(), bytes.len());
    Ok(())
}
