//! The container's root filesystem: mounts the `rootfs` mounts of a CreateTask request
//! (overlay from the snapshotter, or bind) onto `<bundle>/rootfs`, and unmounts it again.

use std::path::Path;

use super::BuiltinError;
use crate::sys::{self, MsFlags};

/// One mount from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mount flags and the remaining filesystem data of an option list.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    flags: MsFlags,
    propagation: MsFlags,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Parsed {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "private" => {
                propagation |= MsFlags::MS_PRIVATE;
                continue;
            }
            "rprivate" => {
                propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC;
                continue;
            }
            "slave" => {
                propagation |= MsFlags::MS_SLAVE;
                continue;
            }
            "rslave" => {
                propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC;
                continue;
            }
            "shared" => {
                propagation |= MsFlags::MS_SHARED;
                continue;
            }
            "rshared" => {
                propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC;
                continue;
            }
            "unbindable" => {
                propagation |= MsFlags::MS_UNBINDABLE;
                continue;
            }
            "runbindable" => {
                propagation |= MsFlags::MS_UNBINDABLE | MsFlags::MS_REC;
                continue;
            }
            "defaults" => continue,
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    Parsed {
        flags,
        propagation,
        data,
    }
}

/// The kernel copies at most one page of mount data.
const MAX_DATA: usize = 4096 - 512;

/// Mount every request mount onto `target`, in order. On failure, what was mounted is undone.
pub fn mount_all(mounts: &[MountSpec], target: &Path) -> Result<(), BuiltinError> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| BuiltinError::Io {
        what: format!("create {}", target.display()),
        source: e,
    })?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = sys::unmount(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &MountSpec, target: &Path) -> Result<(), BuiltinError> {
    let p = parse_options(&m.options);
    let data = p.data.join(",");
    if data.len() > MAX_DATA {
        return Err(BuiltinError::Unsupported(format!(
            "{} mount options are {} bytes, more than one page",
            m.kind,
            data.len()
        )));
    }
    let fail = |source: std::io::Error| BuiltinError::Io {
        what: format!(
            "mount {} {} on {} (options {:?})",
            m.kind,
            m.source,
            target.display(),
            m.options
        ),
        source,
    };
    let is_bind = m.kind == "bind" || p.flags.contains(MsFlags::MS_BIND);
    let flags = if is_bind {
        p.flags | MsFlags::MS_BIND
    } else {
        p.flags
    };
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    let fstype = (!is_bind).then_some(m.kind.as_str());
    // A bind mount ignores MS_RDONLY on the first call: mount, then remount read-only.
    sys::mount(
        Some(m.source.as_str()),
        target,
        fstype,
        if is_bind {
            flags - MsFlags::MS_RDONLY
        } else {
            flags
        },
        data_opt,
    )
    .map_err(fail)?;
    if is_bind && flags.contains(MsFlags::MS_RDONLY) {
        sys::mount(
            None,
            target,
            None,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(fail)?;
    }
    if !p.propagation.is_empty() {
        sys::mount(None, target, None, p.propagation, None).map_err(fail)?;
    }
    Ok(())
}

/// Unmount everything stacked on `target` (bounded), ignoring "not mounted".
pub fn unmount_all(target: &Path) -> Result<(), BuiltinError> {
    for _ in 0..16 {
        match sys::unmount(target) {
            Ok(true) => continue,
            Ok(false) => return Ok(()),
            Err(e) => {
                return Err(BuiltinError::Io {
                    what: format!("unmount {}", target.display()),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let p = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(
            p.data.join(","),
            "index=off,workdir=/w,upperdir=/u,lowerdir=/l"
        );
    }

    #[test]
    fn flags_set_and_clear() {
        let p = parse_options(&opts(&["rbind", "ro", "nosuid", "rw", "rprivate"]));
        assert!(p
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID));
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
    }

    #[test]
    fn too_long_options_are_refused_by_name() {
        let long = format!("lowerdir={}", "/x".repeat(3000));
        let m = MountSpec {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![long],
        };
        let dir = tempfile::tempdir().unwrap();
        let e = mount_all(&[m], &dir.path().join("rootfs")).unwrap_err();
        assert!(e.to_string().contains("overlay mount options"), "{e}");
    }

    #[test]
    fn unmounting_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        unmount_all(dir.path()).unwrap();
    }
}
