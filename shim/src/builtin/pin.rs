//! Closes the window between `start`'s walk of a bind source and the OCI runtime's mount, for the
//! built-in backend (SPEC §3.6). `start` walked each source an `allowed_host_paths` entry allows
//! without following a symlink; a container of the same pod could still swap a directory of its
//! volume for a symlink before `runc create` mounts the path. So at `Create`, for a tenant that
//! denies `host-path`, this daemon walks each such source again, holding each component open
//! (`O_PATH | O_NOFOLLOW`), and bind-mounts the last one (through `/proc/self/fd/<n>`: the very
//! inode walked, whatever the pod renames or plants meanwhile) onto a pin of its own,
//! `<router state>/pins/<daemon pid>-<task id>/<mount index>`, root-only and below the floor no
//! policy opens. The bundle's `config.json` names the pins while the runtime creates the
//! container, so the runtime mounts paths with no component a pod can write. A walk that fails
//! now (the path changed since `start`) refuses the Create. When the pins are dropped, right
//! after the runtime returns, they are unmounted and removed and the original `config.json` is
//! put back. (Naming `/proc/<daemon pid>/fd/<n>` to the runtime directly does not work: runc
//! mounts from a new mount namespace, and a bind of a mount of another namespace is `EINVAL`.)

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use router_config::{DenyRule, Policy};
use router_core::hostpath::{self, PodIds};

use crate::record::{self, DecisionRecord};

const CONFIG: &str = "config.json";
/// The largest `config.json` read (as `start` reads it).
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// The pins of one container while the runtime creates it; dropping it unmounts and removes
/// them and puts the original `config.json` back.
#[derive(Debug)]
pub struct Pins {
    bundle: PathBuf,
    original: Vec<u8>,
    dir: PathBuf,
    pins: Vec<PathBuf>,
}

impl Pins {
    /// How many sources are pinned.
    pub fn len(&self) -> usize {
        self.pins.len()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = record::replace_file(&self.bundle, CONFIG, &self.original, 0o644) {
            log::warn!(
                "{}: cannot put the original {CONFIG} back: {e}",
                self.bundle.display()
            );
        }
        remove_pins(&self.dir, &self.pins);
    }
}

fn remove_pins(dir: &Path, pins: &[PathBuf]) {
    for p in pins {
        if let Err(e) = crate::sys::unmount(p) {
            log::warn!("cannot unmount pin {}: {e}", p.display());
        }
        let _ = std::fs::remove_dir(p).or_else(|_| std::fs::remove_file(p));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Bind-mounts the walked `fd` onto a new pin `dir/<index>` (a directory or an empty file, as
/// the source is).
fn pin_one(dir: &Path, index: usize, fd: &OwnedFd) -> Result<PathBuf, String> {
    let target = dir.join(index.to_string());
    let is_dir = nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(|e| format!("stat the walked source: {e}"))?;
    let made = if is_dir {
        std::fs::DirBuilder::new().mode(0o700).create(&target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map(drop)
    };
    made.map_err(|e| format!("create pin {}: {e}", target.display()))?;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC;
    if let Err(e) = crate::sys::mount(Some(&source), &target, None, flags, None) {
        let _ = std::fs::remove_dir(&target).or_else(|_| std::fs::remove_file(&target));
        return Err(format!("pin {}: {e}", target.display()));
    }
    Ok(target)
}

/// Pins the bind sources of the task in `bundle` that its tenant's `host-path` rule checked.
/// `Ok(None)`: nothing to pin (the tenant does not deny `host-path`, or no source lies under an
/// allowed entry).
pub fn pin_bind_sources(
    bundle: &Path,
    rec: &DecisionRecord,
    policy: &Policy,
    state: &Path,
) -> Result<Option<Pins>, String> {
    let tenant = policy
        .tenants
        .get(rec.tenant.as_str())
        .or_else(|| policy.default_tenant());
    if !tenant.is_some_and(|t| t.denies(DenyRule::HostPath)) {
        return Ok(None);
    }
    let path = bundle.join(CONFIG);
    let original = router_config::safefile::read_limited(&path, MAX_SPEC_BYTES, false)
        .map_err(|e| format!("{}: {e:?}", path.display()))?
        .ok_or_else(|| format!("{} is gone", path.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&original).map_err(|e| format!("{}: {e}", path.display()))?;
    let ids = PodIds {
        pod_uid: rec.pod_uid.as_deref(),
        sandbox_id: Some(rec.sandbox_id.as_str()).filter(|s| !s.is_empty()),
    };
    let mut walked: Vec<(usize, OwnedFd)> = Vec::new();
    if let Some(mounts) = spec.get("mounts").and_then(|m| m.as_array()) {
        for (i, m) in mounts.iter().enumerate() {
            if !is_bind(m) {
                continue;
            }
            let Some(source) = m.get("source").and_then(|s| s.as_str()) else {
                continue;
            };
            let Some(entry) = hostpath::allowing_entry(source, &policy.allowed_host_paths, ids)
            else {
                continue;
            };
            let (_, fd) = crate::hostfacts::walk_open(source, &entry).map_err(|why| {
                format!(
                    "mounts[{i}].source `{source}`: {why}, changed since the router's `start` \
                     checked it [rule deny:host-path, field mounts[{i}].source, tenant {}]",
                    rec.tenant
                )
            })?;
            walked.push((i, fd));
        }
    }
    if walked.is_empty() {
        return Ok(None);
    }
    let dir = state
        .join("pins")
        .join(format!("{}-{}", std::process::id(), rec.id));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut pins = Pins {
        bundle: bundle.to_owned(),
        original,
        dir: dir.clone(),
        pins: Vec::new(),
    };
    for (i, fd) in &walked {
        let pin = pin_one(&dir, *i, fd)?;
        spec["mounts"][*i]["source"] = pin.to_string_lossy().into_owned().into();
        pins.pins.push(pin);
    }
    let body = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
    record::replace_file(bundle, CONFIG, &body, 0o644)
        .map_err(|e| format!("cannot pin the bind sources in {}: {e}", path.display()))?;
    Ok(Some(pins))
}

/// A bind mount as the OCI runtime reads it: type `bind`, or an option `bind`/`rbind`.
fn is_bind(m: &serde_json::Value) -> bool {
    m.get("type").and_then(|t| t.as_str()) == Some("bind")
        || m.get("options")
            .and_then(|o| o.as_array())
            .is_some_and(|o| {
                o.iter()
                    .any(|x| matches!(x.as_str(), Some("bind") | Some("rbind")))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn policy(dir: &Path, deny: &str) -> Policy {
        let p = dir.join("policy.toml");
        let text = format!(
                "version = 1\ndefault_tenant = \"t\"\nallowed_host_paths = [\"{}/pods/{{pod_uid}}/\"]\n\
                 [backends.b]\nkind = \"shim\"\nbinary = \"/bin/true\"\nisolation = \"vm\"\n\
                 [tenants.t]\nbackend = \"b\"\ndeny = [{deny}]\n",
                dir.display()
            );
        router_config::parse(&text, &p).unwrap()
    }

    #[test]
    fn sources_are_pinned_to_what_was_walked_and_put_back() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("pods/u1/volumes/v");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        let bundle = t.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let spec = serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/d", "type": "bind", "source": vol.join("sub"), "options": ["rbind"]},
            {"destination": "/e", "source": "/etc/hostname", "options": ["bind", "ro"]},
        ]});
        let text = serde_json::to_vec_pretty(&spec).unwrap();
        std::fs::write(bundle.join(CONFIG), &text).unwrap();
        let mut rec = crate::record::test_record("c1", "sb1");
        rec.tenant = "t".into();
        rec.pod_uid = Some("u1".into());
        let denies = policy(t.path(), "\"host-path\"");

        let state = t.path().join("state");
        std::fs::write(vol.join("sub/mark"), b"walked").unwrap();
        let pins = pin_bind_sources(&bundle, &rec, &denies, &state)
            .unwrap()
            .unwrap();
        assert_eq!(pins.len(), 1);
        let pinned: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join(CONFIG)).unwrap()).unwrap();
        let src = PathBuf::from(pinned["mounts"][1]["source"].as_str().unwrap());
        assert!(src.starts_with(state.join("pins")), "{}", src.display());
        // the pod swaps the walked dir for a symlink: the pin still holds the walked dir
        std::fs::rename(vol.join("sub"), vol.join("moved")).unwrap();
        symlink("/", vol.join("sub")).unwrap();
        assert_eq!(std::fs::read(src.join("mark")).unwrap(), b"walked");
        // untouched: the source no entry allows, the non-bind mount
        assert_eq!(pinned["mounts"][2]["source"], "/etc/hostname");
        assert_eq!(pinned["mounts"][0]["source"], "proc");
        drop(pins);
        assert_eq!(std::fs::read(bundle.join(CONFIG)).unwrap(), text);
        assert!(!src.exists(), "pin {} left", src.display());
        assert!(
            !state.join("pins").read_dir().unwrap().any(|_| true),
            "pin dir left"
        );

        // now the source holds a symlink: the Create is refused, config.json untouched
        let e = pin_bind_sources(&bundle, &rec, &denies, &state).unwrap_err();
        assert!(
            e.contains("is a symlink") && e.contains("deny:host-path"),
            "{e}"
        );
        assert_eq!(std::fs::read(bundle.join(CONFIG)).unwrap(), text);

        // a tenant that does not deny host-path: nothing is pinned or refused
        let allows = policy(t.path(), "");
        assert!(pin_bind_sources(&bundle, &rec, &allows, &state)
            .unwrap()
            .is_none());
    }
}
