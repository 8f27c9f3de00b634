//! A fault-injecting OCI runtime for e2e tests and the soak benchmark: a small shell script,
//! written into a harness-owned dir and named in the test policy as a built-in backend's
//! `runtime`, that execs the real runc or runsc unless a rule in its `rules` file says
//! otherwise for the runtime verb being called (`create`, `start`, `exec`, `delete`, `kill`, ...):
//! - `VERB fail [N]`: the Nth call (every call without N) fails (exit 1, an error in the
//!   runtime's JSON log like runc writes);
//! - `VERB die [N]`: the real runtime runs the call to its end, then the wrapper kills itself
//!   (SIGKILL): the work was done but the caller sees a crashed runtime;
//! - `VERB stall SECONDS [N]`: the call waits SECONDS before running (a window in which a test
//!   kills the daemon or containerd); the file `stalled` says a call is waiting;
//! - `VERB linger SECONDS [N]`: the real runtime runs the call to its end, then the wrapper waits
//!   SECONDS before exiting with its status (the work is done; the caller is told late); the
//!   file `stalled` says so while it waits.
//!
//! Every call is counted (`calls`: one `VERB N` line each). Rules can be changed at any time
//! ([`FaultyRuntime::set_rules`]); a test can also make the binary vanish ([`FaultyRuntime::vanish`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::policy::{PolicyText, RUNSC_ARGS};

/// The policy of the suites that inject faults (`{dir}` filled by the harness): `kube-system` on
/// built-in runc through the wrapper in `{dir}/faults-runc`, every other namespace on built-in
/// runsc through its wrapper in `{dir}/faults-runsc` (named `runsc`: the router knows runsc by
/// name). Shared by `tests/tests/builtin_faults.rs` and the soak benchmark.
pub fn faults_policy() -> String {
    PolicyText::bare("untrusted")
        .builtin("runc", "{dir}/faults-runc/runc", &[], "container")
        .builtin("gvisor", "{dir}/faults-runsc/runsc", &RUNSC_ARGS, "sandbox")
        .tenant("provider", &["kube-system"], "runc")
        .tenant("untrusted", &[], "gvisor")
        .list(
            "deny",
            &["host-network", "host-pid", "host-ipc", "privileged"],
        )
        .into()
}

/// The wrapper script; `@REAL@` and `@DIR@` are filled in.
const SCRIPT: &str = r#"#!/bin/sh
# Fault-injecting OCI runtime wrapper (runtime-router e2e tests): see integration/src/faults.rs.
REAL='@REAL@'
DIR='@DIR@'
verb=''
log=''
prev=''
for a in "$@"; do
  [ "$prev" = --log ] && log="$a"
  prev="$a"
  case "$a" in
    create|start|exec|delete|kill|state|ps|events|update|pause|resume|wait)
      [ -z "$verb" ] && verb="$a";;
  esac
done
exec 9>>"$DIR/lock"
flock 9
n=$(grep -c "^$verb " "$DIR/calls" 2>/dev/null)
n=$((n + 1))
echo "$verb $n" >> "$DIR/calls"
rule=$(grep "^$verb " "$DIR/rules" 2>/dev/null | head -n 1)
flock -u 9
exec 9>&-
action=''
a1=''
a2=''
if [ -n "$rule" ]; then
  read -r _verb action a1 a2 <<RULE
$rule
RULE
fi
nth="$a1"
case "$action" in stall|linger) nth="$a2";; esac
if [ -n "$action" ] && { [ -z "$nth" ] || [ "$nth" = "$n" ]; }; then
  case "$action" in
    fail)
      msg="injected fault: $verb call $n fails"
      [ -n "$log" ] && echo "{\"level\":\"error\",\"msg\":\"$msg\"}" >> "$log"
      echo "$msg" >&2
      exit 1;;
    die)
      "$REAL" "$@"
      kill -9 $$;;
    stall)
      echo "$verb $n" >> "$DIR/stalled"
      sleep "$a1";;
    linger)
      "$REAL" "$@"
      rc=$?
      echo "$verb $n" >> "$DIR/stalled"
      sleep "$a1"
      exit $rc;;
  esac
fi
exec "$REAL" "$@"
"#;

/// A fault-injecting wrapper around a real OCI runtime.
#[derive(Debug, Clone)]
pub struct FaultyRuntime {
    dir: PathBuf,
    binary: PathBuf,
}

impl FaultyRuntime {
    /// Writes the wrapper as `<dir>/<name>` (name it `runsc` to wrap runsc: the router knows
    /// runsc by its file name), wrapping `real`. `dir` is created; it also holds the wrapper's
    /// `rules`, `calls`, `stalled` and `lock` files.
    pub fn install(dir: &Path, name: &str, real: &Path) -> Result<FaultyRuntime> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let rt = FaultyRuntime {
            dir: dir.to_path_buf(),
            binary: dir.join(name),
        };
        rt.restore_with(real)?;
        rt.set_rules(&[])?;
        Ok(rt)
    }

    fn restore_with(&self, real: &Path) -> Result<()> {
        let text = SCRIPT
            .replace("@REAL@", &real.to_string_lossy())
            .replace("@DIR@", &self.dir.to_string_lossy());
        let tmp = self.dir.join(".wrapper.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&tmp, &self.binary))
            .map_err(|e| Error::io(format!("write {}", self.binary.display()), e))
    }

    /// The wrapper's path (the policy's `runtime`).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Replaces the rules, one per line (`create fail`, `start fail 2`, `start stall 5`, ...).
    pub fn set_rules(&self, rules: &[&str]) -> Result<()> {
        let path = self.dir.join("rules");
        let tmp = self.dir.join(".rules.tmp");
        let mut text = rules.join("\n");
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    /// How many times `verb` was called so far.
    pub fn calls(&self, verb: &str) -> usize {
        let prefix = format!("{verb} ");
        std::fs::read_to_string(self.dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    /// Whether a `stall` rule is holding a call of `verb` now (or held one).
    pub fn stalled(&self, verb: &str) -> bool {
        let prefix = format!("{verb} ");
        std::fs::read_to_string(self.dir.join("stalled"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&prefix))
    }

    /// Removes the wrapper binary (the runtime vanished); [`FaultyRuntime::restore`] puts it back.
    pub fn vanish(&self) -> Result<()> {
        std::fs::remove_file(&self.binary)
            .map_err(|e| Error::io(format!("remove {}", self.binary.display()), e))
    }

    /// Puts the wrapper back around `real`.
    pub fn restore(&self, real: &Path) -> Result<()> {
        self.restore_with(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn rules_fail_count_and_pass_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = FaultyRuntime::install(dir.path(), "fake", Path::new("/bin/echo")).unwrap();
        let run = |args: &[&str]| Command::new(rt.binary()).args(args).output().unwrap();
        let out = run(&["--root", "/x", "state", "c1"]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "--root /x state c1\n");
        rt.set_rules(&["start fail 2", "delete die"]).unwrap();
        let log = dir.path().join("log.json");
        let log = log.to_str().unwrap();
        assert!(run(&["--log", log, "start", "a"]).status.success());
        let second = run(&["--log", log, "start", "a"]);
        assert_eq!(second.status.code(), Some(1));
        assert!(std::fs::read_to_string(log)
            .unwrap()
            .contains("injected fault"));
        assert!(run(&["start", "a"]).status.success());
        assert_eq!(rt.calls("start"), 3);
        let died = run(&["delete", "a"]);
        assert_eq!(String::from_utf8_lossy(&died.stdout), "delete a\n");
        assert!(died.status.code().is_none(), "killed by a signal");
        rt.vanish().unwrap();
        assert!(Command::new(rt.binary()).output().is_err());
    }

    #[test]
    fn linger_does_the_work_then_answers_late_with_its_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let echo =
            FaultyRuntime::install(&dir.path().join("e"), "fake", Path::new("/bin/echo")).unwrap();
        echo.set_rules(&["kill linger 1 2"]).unwrap();
        let run = |args: &[&str]| Command::new(echo.binary()).args(args).output().unwrap();
        let t = std::time::Instant::now();
        assert!(run(&["kill", "a", "9"]).status.success());
        assert!(
            t.elapsed() < std::time::Duration::from_millis(900),
            "first call lingered"
        );
        assert!(!echo.stalled("kill"));
        let t = std::time::Instant::now();
        let second = run(&["kill", "a", "9"]);
        assert!(
            t.elapsed() >= std::time::Duration::from_secs(1),
            "second call did not linger"
        );
        assert_eq!(String::from_utf8_lossy(&second.stdout), "kill a 9\n");
        assert!(second.status.success());
        assert!(echo.stalled("kill"));
        let fail =
            FaultyRuntime::install(&dir.path().join("f"), "fake", Path::new("/bin/false")).unwrap();
        fail.set_rules(&["kill linger 0"]).unwrap();
        let out = Command::new(fail.binary()).arg("kill").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "the real call's status is kept");
    }
}
