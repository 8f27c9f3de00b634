//! `containerd-shim-replyas-v2`: a test delegate for the hand-off suites that answers `start` in
//! a chosen encoding. It runs a real shim v2 binary (`REPLYAS_REAL`, containerd's
//! `containerd-shim-runc-v2`) with the same argv, cwd, stdin and environment, reads the real
//! reply, and prints it again as `REPLYAS_MODE` says:
//! - `proto`: protobuf `BootstrapResult` (what containerd 2.3's shim library prints);
//! - `json`: the JSON bootstrap object (containerd 2.0–2.2's shim library);
//! - `plain`: the plain address (containerd 1.x's shim library; version 2 only);
//! - `proto-v9`, `json-v9`: the same address under a bootstrap version nobody knows;
//! - `garbage`: bytes that are no reply at all.
//!
//! The version and address are the real shim's, so the pod really runs; the encoding is the
//! project's own (`router_compat`, written from containerd's `.proto`). Every other action
//! (`delete`, the daemon, `-info`) is the real binary's: this process replaces itself with it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use router_compat::bootstrap::{encode_result, BootstrapResult};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(real) = std::env::var_os("REPLYAS_REAL") else {
        eprint!("replyas: REPLYAS_REAL is not set");
        return ExitCode::FAILURE;
    };
    if !args.iter().any(|a| a == "start") {
        let e = Command::new(&real).args(&args).exec();
        eprint!("replyas: exec {}: {e}", real.to_string_lossy());
        return ExitCode::FAILURE;
    }
    let mode = std::env::var("REPLYAS_MODE").unwrap_or_default();
    let out = match Command::new(&real)
        .args(&args)
        .stdout(Stdio::piped())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprint!("replyas: run {}: {e}", real.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    if !out.status.success() {
        return ExitCode::from(out.status.code().unwrap_or(1).clamp(1, 255) as u8);
    }
    let reply = match router_compat::classify(&out.stdout) {
        Ok(r) => r,
        Err(e) => {
            eprint!("replyas: the real shim's reply: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proto = |version: i32| {
        encode_result(&BootstrapResult {
            version,
            address: reply.address.clone(),
            protocol: "ttrpc".into(),
        })
    };
    let json = |version: u32| {
        format!(
            r#"{{"version":{version},"address":"{}","protocol":"ttrpc"}}"#,
            reply.address
        )
        .into_bytes()
    };
    let bytes = match mode.as_str() {
        "proto" => proto(reply.version as i32),
        "json" => json(reply.version),
        "plain" if reply.version == 2 => reply.address.clone().into_bytes(),
        "plain" => {
            eprint!(
                "replyas: a plain address cannot say version {}",
                reply.version
            );
            return ExitCode::FAILURE;
        }
        "proto-v9" => proto(9),
        "json-v9" => json(9),
        "garbage" => b"\x00\x01not a bootstrap reply\xff".to_vec(),
        other => {
            eprint!("replyas: unknown REPLYAS_MODE {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
