//! The check at task creation that cannot be skipped: a pod's shim (the built-in daemon, or the
//! relay in front of a delegate shim) creates a task only if the router's `start` decided it for
//! that pod — its authoritative record (`crate::records`) exists and names the pod's sandbox.
//! `start` is where a container's own spec meets the deny rules; a containerd that connects a
//! container to its pod's shim without calling `start` (containerd 2.0.0–2.0.5 for every app
//! container, any 2.x after a version-3 bootstrap reply) gets a refusal, never an unchecked
//! container.

use std::path::PathBuf;

use crate::containerd_compat;
use crate::records::RecordStore;

/// What one pod's shim needs to check the tasks containerd asks it to create.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The router's state dir.
    pub state: PathBuf,
    /// containerd's `-address` (names the record store).
    pub address: String,
    pub namespace: String,
    /// The pod's sandbox id (the task id itself for a task outside any pod).
    pub sandbox_id: String,
    /// containerd's `-publish-binary`, asked for its version when a task is refused.
    pub publish_binary: String,
}

impl Admission {
    /// `Ok` if task `id` was decided by the router's `start` for this pod; else the reason,
    /// one line naming the task and the pod.
    pub fn check(&self, id: &str) -> Result<(), String> {
        self.admit(id).map(|_| ())
    }

    /// [`Self::check`], returning the task's decision record.
    pub fn admit(&self, id: &str) -> Result<crate::record::DecisionRecord, String> {
        let found = RecordStore::open(&self.state, &self.address, &self.namespace, false).and_then(
            |store| match store {
                Some(store) => store.read(id),
                None => Ok(None),
            },
        );
        let why = match found {
            Ok(Some(rec)) if rec.sandbox_id == self.sandbox_id => return Ok(rec),
            Ok(Some(rec)) => format!(
                "its decision record names pod sandbox {}, not {}",
                rec.sandbox_id, self.sandbox_id
            ),
            Ok(None) => "the router's `start` never decided it (no decision record)".to_owned(),
            Err(e) => format!("its decision record cannot be read: {e}"),
        };
        let hint = containerd_compat::query_version(&self.publish_binary)
            .filter(|v| v.skips_every_container_start())
            .map(|v| {
                format!(
                    "; containerd {v} never calls the shim's `start` for a pod's containers \
                     (fixed in 2.0.6 and 2.1.0), so the router cannot check their specs: \
                     upgrade containerd"
                )
            })
            .unwrap_or_default();
        Err(format!(
            "runtime-router: refused to create task {id} in pod {}: {why}, so its spec was \
             never checked against the node policy{hint}",
            self.sandbox_id
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DecisionRecord;

    fn rec(id: &str, sandbox: &str) -> DecisionRecord {
        crate::record::test_record(id, sandbox)
    }

    #[test]
    fn only_tasks_decided_for_this_pod_are_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let gate = Admission {
            state: state.clone(),
            address: "/run/c.sock".into(),
            namespace: "k8s.io".into(),
            sandbox_id: "pod-a".into(),
            publish_binary: "/nonexistent/containerd".into(),
        };
        // no store at all yet
        let e = gate.check("ctr-1").unwrap_err();
        assert!(e.contains("task ctr-1") && e.contains("pod-a"), "{e}");
        let store = RecordStore::open(&state, "/run/c.sock", "k8s.io", true)
            .unwrap()
            .unwrap();
        store.write("ctr-1", &rec("ctr-1", "pod-a")).unwrap();
        store.write("ctr-2", &rec("ctr-2", "pod-b")).unwrap();
        assert_eq!(gate.check("ctr-1"), Ok(()));
        let e = gate.check("ctr-2").unwrap_err();
        assert!(e.contains("names pod sandbox pod-b"), "{e}");
        let e = gate.check("ctr-3").unwrap_err();
        assert!(e.contains("never decided"), "{e}");
        let e = gate.check("../x").unwrap_err();
        assert!(e.contains("cannot be read"), "{e}");
        // another containerd's records do not count
        let other = Admission {
            address: "/run/other.sock".into(),
            ..gate.clone()
        };
        assert!(other.check("ctr-1").is_err());
    }
}
