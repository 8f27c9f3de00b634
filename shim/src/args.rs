//! Command-line arguments of a shim v2 binary, parsed the way containerd's Go shims parse them
//! (Go's `flag` package): `-name value`, `-name=value`, `--name value`, `--name=value`, boolean
//! flags alone or as `-debug=true|false`; flags stop at the first non-flag argument (the action)
//! or at `--`. The raw argv is kept so a hand-off can pass it on unchanged. Hand-written on
//! purpose: this runs at every `start` containerd makes (a pod start's hot path), where a
//! general parser such as clap (which `routerctl` uses) would cost start-up time and binary size
//! for six flags.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// What containerd asked the binary to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `start`: decide, record, then start (or hand off to) the pod's shim.
    Start,
    /// `delete`: clean up after a shim that is gone.
    Delete,
    /// No action: run as the long-lived shim daemon (built-in backend).
    Daemon,
}

/// The flags containerd passes to every shim v2 binary invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// `-namespace`: containerd namespace owning the task.
    pub namespace: String,
    /// `-address`: containerd's gRPC socket.
    pub address: String,
    /// `-publish-binary`: binary used to publish events back to containerd.
    pub publish_binary: String,
    /// `-id`: task id (container or sandbox id).
    pub id: String,
    /// `-bundle`: bundle path when it is not the working directory (`delete`).
    pub bundle: Option<PathBuf>,
    /// `-socket`: socket to serve (daemon mode of some shims).
    pub socket: Option<String>,
    /// `-debug`: enable debug logging.
    pub debug: bool,
    /// `-v`: print the version and exit.
    pub version: bool,
    /// `-info`: print the protobuf `RuntimeInfo` and exit (containerd 2.x).
    pub info: bool,
    /// The action word after the flags.
    pub action: Action,
    /// Arguments after the action word (none are expected by containerd).
    pub rest: Vec<String>,
    /// argv\[1..\] exactly as received, for a hand-off to another shim.
    pub raw: Vec<OsString>,
    /// The runtime handler name containerd started this binary under: `<name>` of a binary
    /// invoked as `containerd-shim-<name>-v2` (containerd's `io.containerd.<name>.v2`), `None`
    /// when the binary was invoked by another name. Recorded and audited; never a grant.
    pub handler: Option<String>,
}

/// `<name>` of `…/containerd-shim-<name>-v2`, the way containerd names a shim binary after its
/// runtime type; `None` for any other file name.
pub fn handler_from_argv0(argv0: &std::ffi::OsStr) -> Option<String> {
    let file = std::path::Path::new(argv0).file_name()?.to_str()?;
    let name = file.strip_prefix("containerd-shim-")?.strip_suffix("-v2")?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| name.to_owned())
}

/// A command line that containerd would never send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for -{flag}")]
    BadBool { flag: String, value: String },
    #[error("argument is not valid UTF-8: {0:?}")]
    NotUtf8(OsString),
    #[error("unknown action `{0}` (expected `start`, `delete` or none)")]
    UnknownAction(String),
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
}

enum Kind {
    Str,
    Bool,
}

fn flag_kind(name: &str) -> Option<Kind> {
    match name {
        "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket" => Some(Kind::Str),
        "debug" | "v" | "info" => Some(Kind::Bool),
        _ => None,
    }
}

fn parse_bool(flag: &str, value: &str) -> Result<bool, ArgsError> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ArgsError::BadBool {
            flag: flag.to_owned(),
            value: value.to_owned(),
        }),
    }
}

impl ShimArgs {
    /// Parse this process's own arguments.
    pub fn from_env() -> Result<Self, ArgsError> {
        let mut argv = std::env::args_os();
        let handler = argv.next().as_deref().and_then(handler_from_argv0);
        let mut out = Self::parse(argv.collect())?;
        out.handler = handler;
        Ok(out)
    }

    /// Parse argv\[1..\].
    pub fn parse(raw: Vec<OsString>) -> Result<Self, ArgsError> {
        let mut strs = Vec::with_capacity(raw.len());
        for a in &raw {
            match a.to_str() {
                Some(s) => strs.push(s.to_owned()),
                None => return Err(ArgsError::NotUtf8(a.clone())),
            }
        }
        let mut out = ShimArgs {
            namespace: String::new(),
            address: String::new(),
            publish_binary: "containerd".to_owned(),
            id: String::new(),
            bundle: None,
            socket: None,
            debug: false,
            version: false,
            info: false,
            action: Action::Daemon,
            handler: None,
            rest: Vec::new(),
            raw,
        };
        let mut i = 0;
        while i < strs.len() {
            let arg = &strs[i];
            if arg == "--" {
                i += 1;
                break;
            }
            if arg.len() < 2 || !arg.starts_with('-') {
                break;
            }
            let body = arg
                .strip_prefix("--")
                .unwrap_or_else(|| &arg[1..])
                .to_owned();
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(ArgsError::BadSyntax(arg.clone()));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (body, None),
            };
            i += 1;
            match flag_kind(&name) {
                None => return Err(ArgsError::UnknownFlag(name)),
                Some(Kind::Bool) => {
                    let v = match inline {
                        Some(v) => parse_bool(&name, &v)?,
                        None => true,
                    };
                    match name.as_str() {
                        "debug" => out.debug = v,
                        "info" => out.info = v,
                        _ => out.version = v,
                    }
                }
                Some(Kind::Str) => {
                    let v = match inline {
                        Some(v) => v,
                        None => {
                            let v = strs
                                .get(i)
                                .cloned()
                                .ok_or_else(|| ArgsError::MissingValue(name.clone()))?;
                            i += 1;
                            v
                        }
                    };
                    match name.as_str() {
                        "namespace" => out.namespace = v,
                        "address" => out.address = v,
                        "publish-binary" => out.publish_binary = v,
                        "id" => out.id = v,
                        "bundle" => out.bundle = Some(PathBuf::from(v)),
                        _ => out.socket = Some(v),
                    }
                }
            }
        }
        let mut positional = strs[i.min(strs.len())..].iter();
        out.action = match positional.next().map(String::as_str) {
            None => Action::Daemon,
            Some("start") => Action::Start,
            Some("delete") => Action::Delete,
            Some(other) => return Err(ArgsError::UnknownAction(other.to_owned())),
        };
        out.rest = positional.cloned().collect();
        Ok(out)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Delete => "delete",
            Action::Daemon => "daemon",
        })
    }
}

/// `start` arguments of task `id` for containerd `/run/c.sock`, namespace `k8s.io` (tests).
#[cfg(test)]
pub fn test_args(id: &str) -> ShimArgs {
    let raw = [
        "-namespace",
        "k8s.io",
        "-address",
        "/run/c.sock",
        "-id",
        id,
        "start",
    ];
    ShimArgs::parse(raw.iter().map(std::ffi::OsString::from).collect())
        .unwrap_or_else(|e| panic!("test args: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<ShimArgs, ArgsError> {
        ShimArgs::parse(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn handler_is_the_name_containerd_gave_the_binary() {
        let cases = [
            ("/usr/local/bin/containerd-shim-router-v2", Some("router")),
            ("containerd-shim-router-vm-v2", Some("router-vm")),
            (
                "/x/containerd-shim-router-sandbox-v2",
                Some("router-sandbox"),
            ),
            ("/x/containerd-shim--v2", None),
            ("/x/containerd-shim-router-v3", None),
            ("/x/router", None),
            ("/x/containerd-shim-a b-v2", None),
            ("", None),
        ];
        for (argv0, want) in cases {
            assert_eq!(
                handler_from_argv0(std::ffi::OsStr::new(argv0)).as_deref(),
                want,
                "{argv0}"
            );
        }
    }

    #[test]
    fn containerd_16_start_line() {
        let a = p(&[
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(a.namespace, "k8s.io");
        assert_eq!(a.address, "/run/containerd/containerd.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "abc");
        assert!(a.debug);
        assert_eq!(a.action, Action::Start);
        assert_eq!(a.raw.len(), 10);
    }

    #[test]
    fn delete_line_with_bundle_and_equals_forms() {
        let a = p(&[
            "--namespace=default",
            "-address=/a.sock",
            "--id",
            "x",
            "-bundle=/run/b/x",
            "-debug=false",
            "delete",
        ])
        .unwrap();
        assert_eq!(a.namespace, "default");
        assert_eq!(a.address, "/a.sock");
        assert_eq!(a.id, "x");
        assert_eq!(a.bundle, Some(PathBuf::from("/run/b/x")));
        assert!(!a.debug);
        assert_eq!(a.action, Action::Delete);
    }

    #[test]
    fn no_action_is_daemon_and_double_dash_ends_flags() {
        assert_eq!(p(&["-id", "x"]).unwrap().action, Action::Daemon);
        let a = p(&["-id", "x", "--", "start"]).unwrap();
        assert_eq!(a.action, Action::Start);
        // a value that looks like a flag is still a value, as in Go
        assert_eq!(p(&["-id", "-x", "start"]).unwrap().id, "-x");
    }

    #[test]
    fn info_flag_of_containerd_2() {
        let a = p(&["-info"]).unwrap();
        assert!(a.info);
        assert_eq!(a.action, Action::Daemon);
        assert!(!p(&["-id", "x", "start"]).unwrap().info);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            p(&["-nope", "start"]).unwrap_err(),
            ArgsError::UnknownFlag("nope".into())
        );
        assert_eq!(
            p(&["-id"]).unwrap_err(),
            ArgsError::MissingValue("id".into())
        );
        assert!(matches!(
            p(&["-debug=maybe"]).unwrap_err(),
            ArgsError::BadBool { .. }
        ));
        assert_eq!(
            p(&["-id", "x", "stop"]).unwrap_err(),
            ArgsError::UnknownAction("stop".into())
        );
        assert!(matches!(
            p(&["---id", "x"]).unwrap_err(),
            ArgsError::BadSyntax(_)
        ));
    }
}
