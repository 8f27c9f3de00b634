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
}
