//! Dependency-free argument parsing for `routerctl` (`--flag value` and `--flag=value`).

use std::path::PathBuf;

/// `routerctl check` arguments.
#[derive(Debug, Default)]
pub struct CheckArgs {
    pub policy: Option<PathBuf>,
    pub containerd_config: Option<PathBuf>,
}

/// `routerctl explain` arguments.
#[derive(Debug, Default)]
pub struct ExplainArgs {
    pub config: Option<PathBuf>,
    pub namespace: Option<String>,
    pub annotations: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub bundle: Option<PathBuf>,
    pub containerd_namespace: Option<String>,
}

/// Splits `--flag=value` or takes the next argument as the value.
fn flag_value<'a>(
    arg: &'a str,
    it: &mut impl Iterator<Item = &'a String>,
) -> Result<(&'a str, String), String> {
    if let Some((f, v)) = arg.split_once('=') {
        return Ok((f, v.to_string()));
    }
    match it.next() {
        Some(v) => Ok((arg, v.clone())),
        None => Err(format!("{arg} needs a value")),
    }
}

fn key_value(flag: &str, v: &str) -> Result<(String, String), String> {
    match v.split_once('=') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
        _ => Err(format!("{flag} wants KEY=VALUE, got `{v}`")),
    }
}

fn set_once<T>(slot: &mut Option<T>, flag: &str, v: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{flag} given twice"));
    }
    *slot = Some(v);
    Ok(())
}

pub fn parse_check(args: &[String]) -> Result<CheckArgs, String> {
    let mut out = CheckArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let (flag, v) = flag_value(a, &mut it)?;
            match flag {
                "--containerd-config" => {
                    set_once(&mut out.containerd_config, flag, PathBuf::from(v))?
                }
                "--config" => set_once(&mut out.policy, flag, PathBuf::from(v))?,
                _ => return Err(format!("unknown option `{flag}` for check")),
            }
        } else {
            set_once(&mut out.policy, "policy FILE", PathBuf::from(a))?;
        }
    }
    Ok(out)
}

pub fn parse_explain(args: &[String]) -> Result<ExplainArgs, String> {
    let mut out = ExplainArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !a.starts_with("--") {
            return Err(format!("unexpected argument `{a}` for explain"));
        }
        let (flag, v) = flag_value(a, &mut it)?;
        match flag {
            "--config" => set_once(&mut out.config, flag, PathBuf::from(v))?,
            "--namespace" | "-n" => set_once(&mut out.namespace, flag, v)?,
            "--annotation" => out.annotations.push(key_value(flag, &v)?),
            "--label" => out.labels.push(key_value(flag, &v)?),
            "--bundle" => set_once(&mut out.bundle, flag, PathBuf::from(v))?,
            "--containerd-namespace" => set_once(&mut out.containerd_namespace, flag, v)?,
            _ => return Err(format!("unknown option `{flag}` for explain")),
        }
    }
    if out.namespace.as_deref() == Some("") {
        return Err("--namespace is empty".to_string());
    }
    Ok(out)
}

/// `routerctl policy apply|watch` arguments.
#[derive(Debug, Default)]
pub struct PolicyArgs {
    pub watch: bool,
    pub from: Option<PathBuf>,
    pub to: Option<PathBuf>,
    pub interval_ms: Option<u64>,
}

pub fn parse_policy(args: &[String]) -> Result<PolicyArgs, String> {
    let mut out = PolicyArgs::default();
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("apply") => {}
        Some("watch") => out.watch = true,
        Some(o) => return Err(format!("unknown policy command `{o}` (apply or watch)")),
        None => return Err("policy needs `apply FILE` or `watch --from FILE`".to_string()),
    }
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let (flag, v) = flag_value(a, &mut it)?;
            match flag {
                "--to" => set_once(&mut out.to, flag, PathBuf::from(v))?,
                "--from" => set_once(&mut out.from, flag, PathBuf::from(v))?,
                "--interval-ms" if out.watch => {
                    let ms = v.parse::<u64>().ok().filter(|m| *m > 0).ok_or_else(|| {
                        format!("--interval-ms wants a positive number, got `{v}`")
                    })?;
                    set_once(&mut out.interval_ms, flag, ms)?
                }
                _ => return Err(format!("unknown option `{flag}` for policy")),
            }
        } else if out.watch {
            return Err(format!(
                "unexpected argument `{a}`: policy watch takes --from FILE"
            ));
        } else {
            set_once(&mut out.from, "policy FILE", PathBuf::from(a))?;
        }
    }
    if out.from.is_none() {
        return Err(if out.watch {
            "policy watch needs --from FILE".to_string()
        } else {
            "policy apply needs FILE".to_string()
        });
    }
    Ok(out)
}

/// `routerctl node-features` arguments.
#[derive(Debug, Default)]
pub struct FeaturesArgs {
    pub config: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

pub fn parse_features(args: &[String]) -> Result<FeaturesArgs, String> {
    let mut out = FeaturesArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, v) = flag_value(a, &mut it)?;
        match flag {
            "--config" => set_once(&mut out.config, flag, PathBuf::from(v))?,
            "--output" => set_once(&mut out.output, flag, PathBuf::from(v))?,
            _ => return Err(format!("unknown option `{flag}` for node-features")),
        }
    }
    Ok(out)
}

/// `routerctl metrics` arguments.
#[derive(Debug, Default)]
pub struct MetricsArgs {
    pub audit_log: Option<PathBuf>,
    pub listen: Option<String>,
    pub interval_ms: Option<u64>,
}

pub fn parse_metrics(args: &[String]) -> Result<MetricsArgs, String> {
    let mut out = MetricsArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, v) = flag_value(a, &mut it)?;
        match flag {
            "--audit-log" => set_once(&mut out.audit_log, flag, PathBuf::from(v))?,
            "--listen" => set_once(&mut out.listen, flag, v)?,
            "--interval-ms" => {
                let ms =
                    v.parse::<u64>().ok().filter(|m| *m > 0).ok_or_else(|| {
                        format!("--interval-ms wants a positive number, got `{v}`")
                    })?;
                set_once(&mut out.interval_ms, flag, ms)?
            }
            _ => return Err(format!("unknown option `{flag}` for metrics")),
        }
    }
    Ok(out)
}

/// `routerctl install|uninstall` arguments.
pub fn parse_install(args: &[String]) -> Result<crate::install::InstallArgs, String> {
    let mut out = crate::install::InstallArgs::default();
    let mut root: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keep-handlers" => {
                out.keep_handlers = true;
                continue;
            }
            "--force" => {
                out.force = true;
                continue;
            }
            _ => {}
        }
        let (flag, v) = flag_value(a, &mut it)?;
        match flag {
            "--host-root" => set_once(&mut root, flag, PathBuf::from(v))?,
            "--from" => set_once(&mut out.from, flag, PathBuf::from(v))?,
            "--bin-dir" => set_once(&mut out.bin_dir, flag, v)?,
            "--containerd-config" => set_once(&mut out.containerd_config, flag, v)?,
            "--config-version" => {
                let n = match v.as_str() {
                    "2" => 2,
                    "3" => 3,
                    _ => return Err(format!("--config-version is 2 or 3, got `{v}`")),
                };
                set_once(&mut out.config_version, flag, n)?
            }
            "--pod-annotation" => out.pod_annotations.push(v),
            "--restart-command" => set_once(&mut out.restart_command, flag, v)?,
            _ => return Err(format!("unknown option `{flag}` for install/uninstall")),
        }
    }
    out.host_root = root.ok_or("--host-root DIR is required (the node's / mounted at DIR)")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn explain_args() {
        let a = parse_explain(&v(&[
            "--namespace",
            "web",
            "--annotation=a=b=c",
            "--label",
            "trusted=true",
            "--config",
            "/p.toml",
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.namespace.as_deref(), Some("web"));
        assert_eq!(a.annotations, [("a".to_string(), "b=c".to_string())]);
        assert_eq!(a.labels, [("trusted".to_string(), "true".to_string())]);
        assert_eq!(a.config, Some(PathBuf::from("/p.toml")));
        assert!(parse_explain(&v(&["--annotation", "novalue"])).is_err());
        assert!(parse_explain(&v(&["--namespace"])).is_err());
        assert!(parse_explain(&v(&["--bogus", "x"])).is_err());
        assert!(parse_explain(&v(&["--namespace", "a", "--namespace", "b"])).is_err());
    }

    #[test]
    fn check_args() {
        let a = parse_check(&v(&["p.toml", "--containerd-config", "c.toml"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.policy, Some(PathBuf::from("p.toml")));
        assert_eq!(a.containerd_config, Some(PathBuf::from("c.toml")));
        assert!(parse_check(&v(&["a", "b"])).is_err());
    }

    #[test]
    fn policy_features_metrics_install_args() {
        let a = parse_policy(&v(&["apply", "new.toml", "--to=/live.toml"])).unwrap();
        assert!(!a.watch);
        assert_eq!(a.from, Some(PathBuf::from("new.toml")));
        assert_eq!(a.to, Some(PathBuf::from("/live.toml")));
        let a = parse_policy(&v(&["watch", "--from", "cm/p.toml", "--interval-ms", "50"])).unwrap();
        assert!(a.watch && a.interval_ms == Some(50));
        assert!(parse_policy(&v(&["watch", "p.toml"])).is_err());
        assert!(parse_policy(&v(&["apply"])).is_err());
        assert!(parse_policy(&v(&["apply", "a", "--interval-ms", "5"])).is_err());
        assert!(parse_policy(&v(&["watch", "--from", "a", "--interval-ms", "0"])).is_err());
        assert!(parse_policy(&v(&[])).is_err());
        let a = parse_features(&v(&["--output", "/d"])).unwrap();
        assert_eq!(a.output, Some(PathBuf::from("/d")));
        assert!(parse_features(&v(&["x"])).is_err());
        let a = parse_metrics(&v(&["--audit-log", "/a", "--listen", "127.0.0.1:0"])).unwrap();
        assert_eq!(a.listen.as_deref(), Some("127.0.0.1:0"));
        let a = parse_install(&v(&[
            "--host-root",
            "/h",
            "--keep-handlers",
            "--config-version",
            "3",
        ]))
        .unwrap();
        assert!(a.keep_handlers && a.config_version == Some(3));
        assert!(parse_install(&v(&["--keep-handlers"])).is_err());
        assert!(parse_install(&v(&["--host-root", "/h", "--config-version", "1"])).is_err());
    }
}
