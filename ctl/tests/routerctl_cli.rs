//! The command line itself, as an operator meets it: help for the tool and for each command,
//! a suggestion for a typo, `--version`, shell completions, and the exit codes (0 help and
//! version, 2 usage error).

mod support;

use std::process::Command;
use support::routerctl;

#[test]
fn help_names_every_command_and_the_exit_codes() {
    let (code, out, err) = routerctl(&["--help"]);
    assert_eq!(code, 0, "{err}");
    for cmd in [
        "check",
        "explain",
        "policy",
        "node-features",
        "metrics",
        "install",
        "uninstall",
        "completions",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{out}"
        );
    }
    assert!(out.contains("2 usage error"), "{out}");
}

#[test]
fn each_command_and_subcommand_has_help() {
    let table: [(&[&str], &[&str]); 4] = [
        (&["policy", "--help"], &["apply", "watch"]),
        (
            &["policy", "watch", "--help"],
            &["--from", "--interval-ms", "[default: 1000]"],
        ),
        (
            &["explain", "--help"],
            &["--namespace", "--annotation", "--bundle"],
        ),
        (&["check", "--help"], &["--containerd-config", "[FILE]"]),
    ];
    for (args, needles) in table {
        let (code, out, err) = routerctl(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        for n in needles {
            assert!(out.contains(n), "{args:?} help lacks {n}:\n{out}");
        }
    }
}

#[test]
fn typos_get_a_suggestion_and_usage_errors_exit_2() {
    let (code, out, err) = routerctl(&["chek"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("'chek'") && err.contains("similar") && err.contains("check"),
        "{err}"
    );
    let (code, _, err) = routerctl(&["policy", "aply", "p.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("apply"), "{err}");
    let (code, _, err) = routerctl(&["explain", "--namespac", "web"]);
    assert_eq!(code, 2);
    assert!(err.contains("--namespace"), "{err}");
    let (code, _, _) = routerctl(&["metrics", "--interval-ms", "0", "--audit-log", "/a"]);
    assert_eq!(code, 2);
}

#[test]
fn version_and_completion_scripts() {
    let (code, out, _) = routerctl(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("routerctl {}", env!("CARGO_PKG_VERSION"))
    );
    let want: [(&str, &str); 3] = [
        ("bash", "complete -F _routerctl"),
        ("zsh", "#compdef routerctl"),
        ("fish", "complete -c routerctl"),
    ];
    for (shell, marker) in want {
        let (code, out, err) = routerctl(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(
            out.contains("node-features"),
            "{shell} script lacks the commands"
        );
    }
    let (code, _, _) = routerctl(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    // the bash script is valid bash
    let (_, script, _) = routerctl(&["completions", "bash"]);
    let status = Command::new("bash")
        .args(["-n", "-c", &script])
        .status()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(status.success());
}
