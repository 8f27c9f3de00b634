//! A bundle's place in its pod, read the way runsc reads it: the CRI annotations
//! `io.kubernetes.cri.container-type` and `io.kubernetes.cri.sandbox-id` in `config.json`.
//! runsc starts a new sandbox for a `sandbox` (or a bundle without CRI annotations, e.g. from
//! `ctr run`) and puts a `container` into the sandbox its `sandbox-id` names.

use std::path::Path;

use super::RunscError;

const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Where a container runs under runsc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Starts its own sandbox; its init is the sandbox process (its pid file names it).
    Sandbox,
    /// Joins the sandbox of `sandbox_id`; not a host process, shares the sandbox's pid.
    Container { sandbox_id: String },
}

impl Role {
    /// The role from a spec's JSON text.
    pub fn from_spec_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let ann = |k: &str| v.pointer("/annotations").and_then(|a| a.get(k)?.as_str());
        match ann(CONTAINER_TYPE) {
            Some("container") => match ann(SANDBOX_ID).filter(|s| !s.is_empty()) {
                Some(id) => Ok(Role::Container {
                    sandbox_id: id.to_owned(),
                }),
                None => Err(format!(
                    "annotation {CONTAINER_TYPE}=container without {SANDBOX_ID}"
                )),
            },
            _ => Ok(Role::Sandbox),
        }
    }

    /// The role of the bundle at `bundle` (its `config.json`).
    pub fn from_bundle(bundle: &Path) -> Result<Self, RunscError> {
        let path = bundle.join("config.json");
        // bounded, never blocking (the bundle may hold anything a pod planted)
        let text = router_config::safefile::read_limited(&path, 16 << 20, false)
            .map_err(|e| e.into_io())
            .and_then(|b| b.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)))
            .and_then(|b| {
                String::from_utf8(b)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|source| RunscError::Io {
                what: format!("read {}", path.display()),
                source,
            })?;
        Self::from_spec_json(&text).map_err(|reason| RunscError::Io {
            what: format!("{}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        })
    }

    /// True for a container joining a sandbox: its exit comes from `runsc wait`, its stdio must
    /// be given to `runsc start`.
    pub fn joins_sandbox(&self) -> bool {
        matches!(self, Role::Container { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_cri_annotations() {
        let sandbox = r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox",
            "io.kubernetes.cri.sandbox-id":"abc"}}"#;
        assert_eq!(Role::from_spec_json(sandbox), Ok(Role::Sandbox));
        let container = r#"{"annotations":{"io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.sandbox-id":"abc"}}"#;
        let role = Role::from_spec_json(container).unwrap();
        assert_eq!(
            role,
            Role::Container {
                sandbox_id: "abc".into()
            }
        );
        assert!(role.joins_sandbox());
        // ctr run: no annotations, a sandbox of its own.
        assert_eq!(
            Role::from_spec_json(r#"{"ociVersion":"1.0.2"}"#),
            Ok(Role::Sandbox)
        );
        let orphan = r#"{"annotations":{"io.kubernetes.cri.container-type":"container"}}"#;
        assert!(Role::from_spec_json(orphan)
            .unwrap_err()
            .contains("sandbox-id"));
        assert!(Role::from_spec_json("{").is_err());
    }

    #[test]
    fn a_bundle_without_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Role::from_bundle(dir.path()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "not json").unwrap();
        let err = Role::from_bundle(dir.path()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
