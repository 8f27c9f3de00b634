//! Writes the DaemonSet's OCI image archive offline (router_integration::routerimage): the host's
//! static busybox (the image builder's base layer: `sh`, `nsenter`, `sleep`...) plus one layer
//! with the router's binaries in `/usr/local/bin` (what `routerctl install --from /usr/local/bin`
//! copies to the node):
//!
//! ```sh
//! scripts/build-shim.sh --release
//! cargo run -p router-integration --example daemonset_image -- \
//!     --bin-dir target/release --out runtime-router-image.tar [--name docker.io/local/runtime-router:0.1.0]
//! ctr -n k8s.io images import runtime-router-image.tar    # on each node, or push it to a registry
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use router_integration::routerimage;

fn main() -> Result<()> {
    let mut bin_dir = PathBuf::from("target/release");
    let mut out = PathBuf::from("runtime-router-image.tar");
    let mut name = format!(
        "docker.io/local/runtime-router:{}",
        env!("CARGO_PKG_VERSION")
    );
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
    let bytes = routerimage::build(&bin_dir, &name)?;
    std::fs::write(&out, &bytes).with_context(|| format!("write {}", out.display()))?;
    println!("wrote {} ({name}, {} bytes)", out.display(), bytes.len());
    Ok(())
}
