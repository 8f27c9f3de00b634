//! Offline OCI images built from the host's static busybox (`busybox-static`): one layer holding
//! `/bin/busybox`, a symlink per applet (the offline equivalent of `busybox --install -s`), and a
//! minimal `/etc`. Written as an OCI image-layout tar archive that `ctr images import` accepts, with
//! uncompressed layers (`application/vnd.oci.image.layer.v1.tar`) and the normalised image names
//! CRI uses (`docker.io/local/busybox:1`, `docker.io/local/pause:1`).

use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::config::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use crate::error::{Error, Result};

/// The host's static busybox.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Applets linked when `busybox --list` cannot be run (the ones tests are known to use).
const FALLBACK_APPLETS: [&str; 32] = [
    "sh", "ash", "sleep", "echo", "cat", "ls", "uname", "dmesg", "true", "false", "id", "hostname",
    "ps", "head", "tail", "dd", "yes", "env", "mount", "umount", "grep", "ip", "kill", "mkdir",
    "rm", "touch", "test", "[", "wc", "stat", "readlink", "nsenter",
];

/// One image to put in the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// Full normalised reference, e.g. `docker.io/local/busybox:1`.
    pub name: String,
    /// Image `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Image `Cmd`.
    pub cmd: Vec<String>,
}

impl ImageSpec {
    /// `docker.io/local/busybox:1`: busybox with `Cmd = ["sh"]`.
    pub fn busybox() -> Self {
        ImageSpec {
            name: BUSYBOX_IMAGE.to_string(),
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
        }
    }

    /// `docker.io/local/pause:1`: a shell that waits forever and exits 0 on SIGTERM/SIGINT (as PID
    /// 1 it would otherwise ignore them; SIGKILL works either way).
    pub fn pause() -> Self {
        ImageSpec {
            name: PAUSE_IMAGE.to_string(),
            entrypoint: vec![
                "/bin/sh".into(),
                "-c".into(),
                "trap 'exit 0' TERM INT; sleep 2147483647 & wait".into(),
            ],
            cmd: Vec::new(),
        }
    }
}

/// The applets of the host busybox (`busybox --list`), or a fixed list if it cannot be asked.
pub fn applets(busybox: &Path) -> Vec<String> {
    let listed = Command::new(busybox)
        .arg("--list")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut names: Vec<String> = listed
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "busybox")
        .map(String::from)
        .collect();
    if names.is_empty() {
        names = FALLBACK_APPLETS.iter().map(|s| s.to_string()).collect();
    }
    names.sort();
    names.dedup();
    names
}

/// The root file-system layer: `/bin/busybox`, applet symlinks in `/bin`, `/sbin`, `/usr/bin`
/// and `/usr/sbin` as links to `/bin`, empty mount points and a minimal `/etc`.
pub fn busybox_layer(busybox: &Path) -> Result<Vec<u8>> {
    let binary = std::fs::read(busybox).map_err(|e| {
        Error::io(
            format!(
                "read {} (install the `busybox-static` package)",
                busybox.display()
            ),
            e,
        )
    })?;
    let mut b = tar::Builder::new(Vec::new());
    let io = |e| Error::io("build busybox layer tar", e);
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sys", "usr", "var", "run",
    ] {
        append_dir(&mut b, dir, 0o755).map_err(io)?;
    }
    append_dir(&mut b, "tmp", 0o1777).map_err(io)?;
    append_file(&mut b, "bin/busybox", 0o755, &binary).map_err(io)?;
    for applet in applets(busybox) {
        append_symlink(&mut b, &format!("bin/{applet}"), "busybox").map_err(io)?;
    }
    append_symlink(&mut b, "sbin", "bin").map_err(io)?;
    append_symlink(&mut b, "usr/bin", "../bin").map_err(io)?;
    append_symlink(&mut b, "usr/sbin", "../bin").map_err(io)?;
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = "root:x:0:\nnobody:x:65534:\n";
    append_file(&mut b, "etc/passwd", 0o644, passwd.as_bytes()).map_err(io)?;
    append_file(&mut b, "etc/group", 0o644, group.as_bytes()).map_err(io)?;
    b.into_inner().map_err(io)
}

/// Writes an OCI image-layout tar archive holding `images`, all sharing the busybox layer.
pub fn write_archive(images: &[ImageSpec], busybox: &Path, out: &Path) -> Result<()> {
    let bytes = build_archive(images, busybox)?;
    let mut f = std::fs::File::create(out)
        .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
    f.write_all(&bytes)
        .map_err(|e| Error::io(format!("write {}", out.display()), e))
}

/// The archive's bytes (see [`write_archive`]).
pub fn build_archive(images: &[ImageSpec], busybox: &Path) -> Result<Vec<u8>> {
    build_archive_layers(images, busybox, &[])
}

/// A layer tar holding `files` (path inside the image without a leading `/`, mode, contents)
/// and the directories above them.
pub fn files_layer(files: &[(String, u32, Vec<u8>)]) -> Result<Vec<u8>> {
    let io = |e| Error::io("build files layer tar", e);
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut acc = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|x| x.1)
            .unwrap_or(&[])
        {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            if dirs.insert(acc.clone()) {
                append_dir(&mut b, &acc, 0o755).map_err(io)?;
            }
        }
    }
    for (path, mode, bytes) in files {
        append_file(&mut b, path, *mode, bytes).map_err(io)?;
    }
    b.into_inner().map_err(io)
}

/// Like [`build_archive`], with `extra_layers` stacked on the busybox layer of every image
/// (e.g. [`files_layer`] with the router's static binaries for the DaemonSet image).
pub fn build_archive_layers(
    images: &[ImageSpec],
    busybox: &Path,
    extra_layers: &[Vec<u8>],
) -> Result<Vec<u8>> {
    if images.is_empty() {
        return Err(Error::Invalid("no images to build".into()));
    }
    let layer = busybox_layer(busybox)?;
    let layer_digest = digest(&layer);
    let arch = oci_arch();

    let mut blobs: Vec<(String, Vec<u8>)> = vec![(layer_digest.clone(), layer)];
    let mut layer_descs = vec![
        serde_json::json!({ "mediaType": MEDIA_LAYER, "digest": layer_digest, "size": blobs[0].1.len() }),
    ];
    let mut diff_ids = vec![layer_digest.clone()];
    for extra in extra_layers {
        let d = digest(extra);
        layer_descs.push(
            serde_json::json!({ "mediaType": MEDIA_LAYER, "digest": d, "size": extra.len() }),
        );
        diff_ids.push(d.clone());
        blobs.push((d, extra.clone()));
    }
    let mut manifests = Vec::new();
    for image in images {
        let tag = tag_of(&image.name).ok_or_else(|| {
            Error::Invalid(format!(
                "image name `{}` has no tag (expected e.g. docker.io/local/busybox:1)",
                image.name
            ))
        })?;
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": [DEFAULT_PATH],
                "Entrypoint": if image.entrypoint.is_empty() { serde_json::Value::Null } else { serde_json::json!(image.entrypoint) },
                "Cmd": if image.cmd.is_empty() { serde_json::Value::Null } else { serde_json::json!(image.cmd) },
                "WorkingDir": "/",
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": [{ "created_by": "router-integration: busybox-static offline build" }],
        });
        let config = to_json(&config)?;
        let config_digest = digest(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": layer_descs,
        });
        let manifest = to_json(&manifest)?;
        let manifest_digest = digest(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": "linux" },
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }));
        blobs.push((config_digest, config));
        blobs.push((manifest_digest, manifest));
    }
    let index = to_json(&serde_json::json!({ "schemaVersion": 2, "manifests": manifests }))?;

    let io = |e| Error::io("build image archive tar", e);
    let mut b = tar::Builder::new(Vec::new());
    append_file(
        &mut b,
        "oci-layout",
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(io)?;
    append_dir(&mut b, "blobs", 0o755).map_err(io)?;
    append_dir(&mut b, "blobs/sha256", 0o755).map_err(io)?;
    let mut written = std::collections::BTreeSet::new();
    for (d, bytes) in &blobs {
        let hex = d.trim_start_matches("sha256:");
        if written.insert(hex.to_string()) {
            append_file(&mut b, &format!("blobs/sha256/{hex}"), 0o644, bytes).map_err(io)?;
        }
    }
    append_file(&mut b, "index.json", 0o644, &index).map_err(io)?;
    b.into_inner().map_err(io)
}

/// The tag part of `repo:tag` (after the last `:` that follows the last `/`).
fn tag_of(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    let (_, tag) = last.rsplit_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// OCI architecture name of this build.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn digest(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn to_json(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Invalid(format!("cannot serialise image JSON: {e}")))
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut h = header(EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty())
}

fn append_file(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = header(EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

fn append_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> std::io::Result<()> {
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(bytes: &[u8]) -> Vec<(String, EntryType, Vec<u8>, Option<String>)> {
        let mut a = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let link = e
                .link_name()
                .expect("link")
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            out.push((path, kind, data, link));
        }
        out
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("docker.io/local/busybox:1"), Some("1"));
        assert_eq!(tag_of("localhost:5000/x"), None);
        assert_eq!(tag_of("x:"), None);
    }

    #[test]
    fn layer_has_busybox_and_applets() {
        let layer = busybox_layer(Path::new(BUSYBOX_PATH)).expect("layer");
        let e = entries(&layer);
        let bb = e.iter().find(|x| x.0 == "bin/busybox").expect("busybox");
        assert_eq!(bb.2, std::fs::read(BUSYBOX_PATH).expect("read busybox"));
        for applet in ["sh", "sleep", "echo", "cat", "dmesg", "mount", "id"] {
            let l = e
                .iter()
                .find(|x| x.0 == format!("bin/{applet}"))
                .unwrap_or_else(|| panic!("applet {applet} missing"));
            assert_eq!(l.1, EntryType::Symlink);
            assert_eq!(l.3.as_deref(), Some("busybox"));
        }
    }

    #[test]
    fn archive_is_a_consistent_oci_layout() {
        let bytes = build_archive(
            &[ImageSpec::busybox(), ImageSpec::pause()],
            Path::new(BUSYBOX_PATH),
        )
        .expect("archive");
        let e = entries(&bytes);
        let file = |name: &str| {
            e.iter()
                .find(|x| x.0 == name)
                .map(|x| x.2.clone())
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let blob = |d: &str| file(&format!("blobs/sha256/{}", d.trim_start_matches("sha256:")));
        let index: serde_json::Value = serde_json::from_slice(&file("index.json")).expect("index");
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 2);
        assert_eq!(
            manifests[1]["annotations"]["io.containerd.image.name"],
            PAUSE_IMAGE
        );
        for m in manifests {
            let d = m["digest"].as_str().expect("digest");
            let mbytes = blob(d);
            assert_eq!(digest(&mbytes), d);
            let man: serde_json::Value = serde_json::from_slice(&mbytes).expect("manifest");
            let cd = man["config"]["digest"].as_str().expect("config digest");
            let cfg: serde_json::Value = serde_json::from_slice(&blob(cd)).expect("config");
            let ld = man["layers"][0]["digest"].as_str().expect("layer digest");
            assert_eq!(cfg["rootfs"]["diff_ids"][0], ld);
            assert_eq!(digest(&blob(ld)), ld);
        }
    }

    #[test]
    fn missing_busybox_is_named() {
        let err = busybox_layer(Path::new("/nonexistent/busybox")).expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/busybox"), "{err}");
    }
}
