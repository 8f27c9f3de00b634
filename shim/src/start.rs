//! `start` (SPEC §2): the routing decision for one task and the hand-over to the backend.
//!
//! containerd runs `start` with the bundle as working directory and reads stdout and stderr
//! *together* as the shim's address, so on success nothing but the address may be printed (by
//! this process or by the shim it execs). Steps: read `config.json`, load the policy, look at the
//! host (`crate::hostfacts`: where the floor's paths are, each allowed bind source walked without
//! following symlinks), decide (a
//! sandbox or a task with no CRI annotations decides alone; a container follows its sandbox's
//! record and only has its own spec checked), resolve the backend, write the decision record
//! (the authoritative copy in the router's root-only state dir, `crate::records`, and an
//! operator's copy `router-decision.json` in the bundle), append the audit line, then run the
//! backend shim's `start` (same argv, cwd, stdin, env + backend env) and pass its reply on — or,
//! for a version-3 reply, front it with the pod's relay (`crate::relay`) — or start the built-in
//! backend, and print the address. Any failure is
//! a refusal: audited, one line on stderr (containerd puts it into the CRI error), exit 1, and no
//! record, daemon or socket left behind.
//!
//! Nothing a pod can write steers what runs: the bundle may be reachable by a pod (a host path
//! into containerd's state), so a container's backend comes only from its sandbox's record in the
//! state dir, never from the bundle's copy, and every file read here is bounded and never blocks.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use router_config::safefile;
use router_config::{BackendKind, ConfigError, Policy};
use router_core::{Decision, Inputs, Refusal, Role};

use crate::args::ShimArgs;
use crate::audit::{self, AuditEntry, Denial};
use crate::backend::{self, BackendError};
use crate::containerd_compat;
use crate::handoff::{self, HandoffError};
use crate::record::{self, DecisionRecord, RecordError, RecordedBackend, RECORD_VERSION};
use crate::records::{RecordStore, StoreError};
use crate::relay::{self, Front, RelayError};
use crate::timefmt;

/// `config.json` larger than this is refused.
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// Why `start` refused (or failed to start) a task.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot determine the bundle directory: {0}")]
    Cwd(io::Error),
    #[error("{path}: cannot read the OCI spec: {source}")]
    SpecRead { path: PathBuf, source: io::Error },
    #[error("{path}: the bundle has no OCI spec, so the router cannot decide: containerd gives a shim no config.json when the runtime handler has `sandboxer = \"shim\"`; route through the router only handlers with the default `sandboxer = \"podsandbox\"` (`routerctl check --containerd-config` reports the others)")]
    NoSpec { path: PathBuf },
    #[error("{path}: OCI spec larger than {MAX_SPEC_BYTES} bytes")]
    SpecTooLarge { path: PathBuf },
    #[error("{path}: the OCI spec is not a regular file (a FIFO, socket, device or symlink is never read)")]
    SpecNotRegular { path: PathBuf },
    #[error("{path}: invalid OCI spec: {message}")]
    SpecParse { path: PathBuf, message: String },
    #[error("policy error, every pod is refused until it is fixed: {0}")]
    Policy(#[from] ConfigError),
    #[error("{0}")]
    Refused(Refusal),
    #[error("container {id}: invalid sandbox id {sandbox_id:?} in io.kubernetes.cri.sandbox-id")]
    BadSandboxId { id: String, sandbox_id: String },
    #[error("container {id}: its sandbox {sandbox_id} has no decision record ({path}); a container never gets a backend of its own")]
    SandboxRecordMissing {
        id: String,
        sandbox_id: String,
        path: PathBuf,
    },
    #[error("container {id}: cannot use its sandbox's decision record: {source}")]
    SandboxRecord { id: String, source: StoreError },
    #[error("container {id}: sandbox decision record {path} belongs to {found}, not {expected}")]
    SandboxMismatch {
        id: String,
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("decision names backend `{0}`, which the policy does not define")]
    UnknownBackend(String),
    #[error(transparent)]
    Handoff(#[from] HandoffError),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("backend `{backend}`: OCI runtime {runtime} is missing or not executable")]
    RuntimeMissing { backend: String, runtime: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot write the decision record: {0}")]
    Record(RecordError),
    #[error("decision records: {0}")]
    Store(StoreError),
}

impl StartError {
    /// The rule named in the audit line.
    fn rule(&self) -> String {
        match self {
            StartError::Refused(r) => r.rule.clone(),
            StartError::Policy(_) | StartError::UnknownBackend(_) => "policy".into(),
            StartError::Cwd(_) | StartError::Record(_) | StartError::Store(_) => "internal".into(),
            StartError::SpecRead { .. }
            | StartError::NoSpec { .. }
            | StartError::SpecTooLarge { .. }
            | StartError::SpecNotRegular { .. }
            | StartError::SpecParse { .. } => "spec".into(),
            StartError::BadSandboxId { .. }
            | StartError::SandboxRecordMissing { .. }
            | StartError::SandboxRecord { .. }
            | StartError::SandboxMismatch { .. } => "sandbox-record".into(),
            StartError::Handoff(HandoffError::Exec { .. }) => "handoff".into(),
            StartError::Handoff(_) | StartError::RuntimeMissing { .. } => "backend-missing".into(),
            StartError::Backend(_) | StartError::Relay(_) => "backend".into(),
        }
    }

    /// The offending field, for the audit line.
    fn field(&self) -> String {
        match self {
            StartError::Refused(r) => r.field.clone(),
            StartError::Policy(e) => e
                .diagnostics()
                .first()
                .map(|d| format!("{}:{}: {}", d.file.display(), d.line, d.field))
                .unwrap_or_default(),
            StartError::BadSandboxId { .. }
            | StartError::SandboxRecordMissing { .. }
            | StartError::SandboxMismatch { .. } => {
                "annotations[io.kubernetes.cri.sandbox-id]".into()
            }
            _ => String::new(),
        }
    }

    fn tenant(&self) -> Option<String> {
        match self {
            StartError::Refused(r) => r.tenant.clone(),
            _ => None,
        }
    }
}

/// What was decided, before it is acted on.
struct Routed {
    decision: Decision,
    target: RecordedBackend,
    sandbox_id: String,
    /// For a container of a relayed pod: the delegate address the pod's relay fronts.
    relay_to: Option<String>,
}

/// Where `start` reads and writes: the bundle (cwd) and the router's state dir.
pub(crate) struct Env {
    pub bundle: PathBuf,
    pub state: PathBuf,
    /// An explicit policy file (tests); `None`: `$RUNTIME_ROUTER_CONFIG` or the default path.
    pub policy: Option<PathBuf>,
}

/// Context shared by the audit of an allowed and a refused start.
struct Ctx<'a> {
    args: &'a ShimArgs,
    started: Instant,
    inputs: Option<Inputs>,
    policy: Option<Policy>,
    /// Set once decided, so a later failure is audited with tenant and backend.
    decision: Option<Decision>,
}

/// Run `start`; returns what to print on stdout for containerd.
pub fn run(args: &ShimArgs) -> Result<String, StartError> {
    let mut ctx = Ctx {
        args,
        started: Instant::now(),
        inputs: None,
        policy: None,
        decision: None,
    };
    let env = match std::env::current_dir() {
        Ok(bundle) => Env {
            bundle,
            state: crate::statedir::state_dir(),
            policy: None,
        },
        Err(e) => {
            let e = StartError::Cwd(e);
            audit_refusal(&ctx, &e);
            return Err(e);
        }
    };
    match route(&mut ctx, &env) {
        Ok(routed) => act(&ctx, &env, routed),
        Err(e) => {
            audit_refusal(&ctx, &e);
            Err(e)
        }
    }
}

fn route(ctx: &mut Ctx<'_>, env: &Env) -> Result<Routed, StartError> {
    // Disjoint borrows of the context: inputs and policy are stored once and read in place (a
    // 50-tenant policy is not cloned on the hot path), while the decision is still recorded for
    // the audit of a later failure.
    let Ctx {
        args,
        inputs: inputs_slot,
        policy: policy_slot,
        decision: decision_slot,
        ..
    } = ctx;
    let args: &ShimArgs = args;
    let spec_path = env.bundle.join("config.json");
    // One parse of the bytes straight into routing inputs: the start path is hot, and a full
    // oci-spec parse would also reject specs containerd accepts (e.g. capability names it lacks).
    let inputs = read_spec(&spec_path).and_then(|bytes| {
        router_core::inputs_from_config_json(&bytes, &args.namespace, &args.id).map_err(|e| {
            StartError::SpecParse {
                path: spec_path.clone(),
                message: e.to_string(),
            }
        })
    });
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            // only so the refusal is audited where the policy says
            *policy_slot = router_config::load(env.policy.as_deref()).ok();
            return Err(e);
        }
    };
    // stored first, so a refusal below is audited with the pod's ids
    let inputs: &mut Inputs = inputs_slot.insert(inputs);
    let policy: &Policy = policy_slot.insert(router_config::load(env.policy.as_deref())?);
    // A container's pod is the one its sandbox's record names: its uid (for the per-pod host
    // paths) comes from there, not from the container's own spec.
    let (sandbox_rec, pod_sources) = match &inputs.role {
        Role::Container { sandbox_id } => {
            let (rec, sources) = read_sandbox_record(env, args, sandbox_id)?;
            inputs.pod_uid = rec.pod_uid.clone();
            (Some(rec), sources)
        }
        Role::Sandbox => (None, Vec::new()),
    };
    // I/O at the edge, before the pure decision: where the floor's paths are on this node, each
    // allowed bind source walked without following a symlink a pod could have planted, and which
    // sources lie inside a directory the pod can already write
    inputs.host = crate::hostfacts::gather(inputs, policy, args, &env.bundle, &pod_sources);
    // the handler this binary was started as: a request through the pod's RuntimeClass
    inputs.handler = args.handler.clone();
    let inputs: &Inputs = inputs;
    let routed = match &inputs.role {
        Role::Sandbox => {
            let decision =
                router_core::decide_sandbox(policy, inputs).map_err(StartError::Refused)?;
            *decision_slot = Some(decision.clone());
            let target = resolve_backend(policy, &decision.backend)?;
            Routed {
                decision,
                target,
                sandbox_id: args.id.clone(),
                relay_to: None,
            }
        }
        Role::Container { sandbox_id } => {
            let Some(sandbox) = sandbox_rec else {
                return Err(StartError::SandboxRecordMissing {
                    id: args.id.clone(),
                    sandbox_id: sandbox_id.clone(),
                    path: env.state.clone(),
                });
            };
            let decision =
                router_core::decide_container(policy, inputs, &sandbox.tenant, &sandbox.backend)
                    .map_err(StartError::Refused)?;
            router_core::handler::check_container(
                policy,
                inputs,
                &decision.tenant,
                sandbox.handler.as_deref(),
            )
            .map_err(StartError::Refused)?;
            *decision_slot = Some(decision.clone());
            check_target(&sandbox.backend, &sandbox.target)?;
            Routed {
                decision,
                target: sandbox.target,
                sandbox_id: sandbox_id.clone(),
                relay_to: sandbox.relay_to,
            }
        }
    };
    Ok(routed)
}

/// `config.json`: one bounded read (sized from fstat), never blocking, never a non-regular file.
fn read_spec(path: &Path) -> Result<Vec<u8>, StartError> {
    let path_owned = || path.to_owned();
    match safefile::read_limited(path, MAX_SPEC_BYTES, false) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(StartError::NoSpec { path: path_owned() }),
        Err(safefile::ReadError::TooLarge { .. }) => {
            Err(StartError::SpecTooLarge { path: path_owned() })
        }
        Err(safefile::ReadError::NotRegular | safefile::ReadError::Directory) => {
            Err(StartError::SpecNotRegular { path: path_owned() })
        }
        Err(safefile::ReadError::Io(source)) => Err(StartError::SpecRead {
            path: path_owned(),
            source,
        }),
    }
}

/// A sandbox id must name a sibling bundle: one plain path component.
fn valid_sandbox_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/') && !id.contains('\0')
}

/// The sandbox's authoritative record, from the router's state dir (never from a bundle), and
/// the bind sources its pod's tasks were given so far.
fn read_sandbox_record(
    env: &Env,
    args: &ShimArgs,
    sandbox_id: &str,
) -> Result<(DecisionRecord, Vec<String>), StartError> {
    if !valid_sandbox_id(sandbox_id) {
        return Err(StartError::BadSandboxId {
            id: args.id.clone(),
            sandbox_id: sandbox_id.to_owned(),
        });
    }
    let store_err = |source| StartError::SandboxRecord {
        id: args.id.clone(),
        source,
    };
    let missing = |path: PathBuf| StartError::SandboxRecordMissing {
        id: args.id.clone(),
        sandbox_id: sandbox_id.to_owned(),
        path,
    };
    let store = RecordStore::open(&env.state, &args.address, &args.namespace, false)
        .map_err(store_err)?
        .ok_or_else(|| missing(env.state.clone()))?;
    let path = store.path_of(sandbox_id).map_err(store_err)?;
    let rec = store
        .read(sandbox_id)
        .map_err(store_err)?
        .ok_or_else(|| missing(path.clone()))?;
    if rec.id != sandbox_id || rec.namespace != args.namespace || rec.role != "sandbox" {
        return Err(StartError::SandboxMismatch {
            id: args.id.clone(),
            path,
            found: format!("{} {}/{}", rec.role, rec.namespace, rec.id),
            expected: format!("sandbox {}/{}", args.namespace, sandbox_id),
        });
    }
    let sources = store.read_binds(sandbox_id).map_err(store_err)?;
    Ok((rec, sources))
}

fn path_var() -> Option<std::ffi::OsString> {
    std::env::var_os("PATH")
}

/// Resolve a sandbox's backend from the policy into what is recorded and run.
fn resolve_backend(policy: &Policy, name: &str) -> Result<RecordedBackend, StartError> {
    let backend = policy
        .backends
        .get(name)
        .ok_or_else(|| StartError::UnknownBackend(name.to_owned()))?;
    match &backend.kind {
        BackendKind::Shim { binary, env } => {
            let binary = handoff::resolve(name, binary, path_var().as_deref())?;
            Ok(RecordedBackend::Shim {
                binary,
                env: env.clone(),
            })
        }
        BackendKind::Builtin {
            runtime,
            runtime_args,
        } => Ok(RecordedBackend::Builtin {
            runtime: resolve_runtime(name, runtime, path_var().as_deref())?,
            runtime_args: runtime_args.clone(),
        }),
    }
}

/// The built-in backend is compiled in and its OCI runtime resolves (on `path_var` for a name,
/// or as an absolute path).
fn resolve_runtime(
    name: &str,
    runtime: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, StartError> {
    if !backend::builtin_available() {
        return Err(BackendError::BuiltinUnavailable {
            backend: name.to_owned(),
        }
        .into());
    }
    let runtime = runtime.to_string_lossy();
    handoff::resolve(name, &runtime, path_var).map_err(|_| StartError::RuntimeMissing {
        backend: name.to_owned(),
        runtime: runtime.into_owned(),
    })
}

/// A container reuses its sandbox's resolved backend: check it is still there.
fn check_target(name: &str, target: &RecordedBackend) -> Result<(), StartError> {
    match target {
        RecordedBackend::Shim { binary, .. } => {
            let s = binary.to_string_lossy();
            handoff::resolve(name, &s, None)?;
        }
        RecordedBackend::Builtin { runtime, .. } => {
            resolve_runtime(name, runtime, None)?;
        }
    }
    Ok(())
}

fn role_name(inputs: Option<&Inputs>) -> String {
    match inputs.map(|i| &i.role) {
        Some(Role::Container { .. }) => "container".into(),
        _ => "sandbox".into(),
    }
}

/// Write the record, audit, and hand over to the backend.
fn act(ctx: &Ctx<'_>, env: &Env, routed: Routed) -> Result<String, StartError> {
    let bundle = env.bundle.as_path();
    let decision_us = ctx.started.elapsed().as_micros() as u64;
    let args = ctx.args;
    let inputs = ctx.inputs.as_ref();
    let (digest, source) = policy_ids(ctx.policy.as_ref());
    let rec = DecisionRecord {
        version: RECORD_VERSION,
        id: args.id.clone(),
        namespace: args.namespace.clone(),
        role: role_name(inputs),
        sandbox_id: routed.sandbox_id.clone(),
        tenant: routed.decision.tenant.clone(),
        backend: routed.decision.backend.clone(),
        isolation: routed.decision.isolation.as_str().to_owned(),
        rule: routed.decision.rule.clone(),
        reasons: routed.decision.reasons.clone(),
        refused_overrides: routed.decision.refused_overrides.clone(),
        policy_digest: digest.clone().unwrap_or_default(),
        policy_source: source.clone().unwrap_or_default(),
        k8s_namespace: inputs.and_then(|i| i.k8s_namespace.clone()),
        pod_name: inputs.and_then(|i| i.pod_name.clone()),
        pod_uid: inputs.and_then(|i| i.pod_uid.clone()),
        decided_at: timefmt::now_rfc3339(),
        target: routed.target.clone(),
        relay_to: routed.relay_to.clone(),
        handler: args.handler.clone(),
    };
    // the pod's writable dirs grow by this task's bind sources (`crate::hostfacts`)
    let sources = inputs
        .map(crate::hostfacts::bind_sources)
        .unwrap_or_default();
    let store = match write_records(env, args, &rec, &sources) {
        Ok(store) => store,
        Err(e) => {
            audit_refusal(ctx, &e);
            return Err(e);
        }
    };
    let entry = AuditEntry {
        time: rec.decided_at.clone(),
        outcome: "allowed",
        role: rec.role.clone(),
        namespace: rec.namespace.clone(),
        id: rec.id.clone(),
        sandbox_id: Some(rec.sandbox_id.clone()),
        k8s_namespace: rec.k8s_namespace.clone(),
        pod_name: rec.pod_name.clone(),
        pod_uid: rec.pod_uid.clone(),
        tenant: Some(rec.tenant.clone()),
        backend: Some(rec.backend.clone()),
        isolation: Some(rec.isolation.clone()),
        handler: rec.handler.clone(),
        rule: rec.rule.clone(),
        reasons: rec.reasons.clone(),
        refused_overrides: rec.refused_overrides.clone(),
        denials: Vec::new(),
        message: String::new(),
        policy_digest: digest,
        policy_source: source,
        decision_us,
    };
    write_audit(ctx.policy.as_ref(), &entry);
    log::debug!(
        "{} {}: tenant `{}` backend `{}` ({}) by {}",
        rec.role,
        rec.id,
        rec.tenant,
        rec.backend,
        rec.isolation,
        rec.rule
    );
    let result = match &routed.target {
        RecordedBackend::Shim { binary, env } => hand_off(args, bundle, &store, &rec, binary, env),
        RecordedBackend::Builtin {
            runtime,
            runtime_args,
        } => {
            let sandbox = match ctx.inputs.as_ref().map(|i| &i.role) {
                Some(Role::Container { sandbox_id }) => Some(sandbox_id.as_str()),
                _ => None,
            };
            backend::builtin_start(args, &rec.backend, runtime, runtime_args, bundle, sandbox)
                .map_err(StartError::from)
        }
    };
    if let Err(e) = &result {
        store.remove(&args.id);
        record::remove(bundle);
        audit_refusal(ctx, e);
    }
    result
}

/// Run the shim backend's `start` and give containerd a reply that brings every container of
/// the pod back to the router: the delegate's own address if its reply is version 2, else the
/// address of the pod's task API relay (`crate::relay`). The reply is classified in whichever
/// encoding it came (`containerd_compat::classify`) and containerd is given the router's own
/// plain reply, never the delegate's bytes: a reply that cannot be classified refuses the pod,
/// and whatever the delegate left running is stopped.
fn hand_off(
    args: &ShimArgs,
    bundle: &Path,
    store: &RecordStore,
    rec: &DecisionRecord,
    binary: &Path,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<String, StartError> {
    if rec.role != "sandbox" && rec.relay_to.is_some() {
        // A container of a relayed pod: containerd given the delegate's own version-3 reply
        // would not run any `start` for it, so neither does the router (the delegate's `start`
        // for a container only names the pod's shim): its spec is checked, it joins the relay.
        return Ok(relay::join_for_container(
            args,
            &rec.backend,
            &rec.sandbox_id,
        )?);
    }
    let out = match handoff::run_start(&rec.backend, binary, &args.raw, env) {
        Ok(out) => out,
        Err(e) => {
            stop_refused_delegate(bundle, None, &args.id);
            return Err(e.into());
        }
    };
    let reply = match containerd_compat::classify(&out) {
        Ok(reply) => reply,
        Err(e) => {
            stop_refused_delegate(bundle, None, &args.id);
            return Err(HandoffError::BadReply {
                backend: rec.backend.clone(),
                binary: binary.to_owned(),
                why: e.to_string(),
            }
            .into());
        }
    };
    let delegate = match relay::front_for(&reply) {
        Front::PassThrough(address) => return Ok(containerd_compat::plain_reply(&address)),
        Front::Relay(delegate) => delegate,
    };
    if rec.role != "sandbox" {
        // a version-3 reply for a container of a pod whose sandbox was not relayed
        stop_refused_delegate(bundle, None, &args.id);
        return Err(RelayError::OtherShim {
            backend: rec.backend.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            got: delegate,
        }
        .into());
    }
    let relayed = relay::start_for_sandbox(args, &rec.backend, bundle, &delegate).and_then(|a| {
        let mut with_relay = rec.clone();
        with_relay.relay_to = Some(delegate.clone());
        store
            .write(&args.id, &with_relay)
            .map_err(|e| RelayError::Spawn {
                backend: rec.backend.clone(),
                reason: format!("record the relay: {e}"),
            })?;
        let _ = record::write(bundle, &with_relay);
        Ok(a)
    });
    relayed.map_err(|e| {
        // The delegate started but containerd will never be told where: it must not stay.
        stop_refused_delegate(bundle, Some(&delegate), &args.id);
        e.into()
    })
}

/// Stops what a delegate's `start` left running when the router refuses the pod after it: the
/// daemons re-parented to this `start` and their sockets (`handoff::stop_orphans`), a version-3
/// delegate named by its reply (asked its pid over its task API, in case containerd's retry
/// found one already running), and the socket file a killed daemon leaves (the reply's address,
/// or the `address` file a containerd 1.x Go shim writes into the bundle).
fn stop_refused_delegate(bundle: &Path, address: Option<&str>, id: &str) {
    if let Some(address) = address {
        match relay::stop_delegate(address, id) {
            Ok(Some(pid)) => log::debug!("stopped delegate shim {pid} at {address}"),
            Ok(None) => {}
            Err(e) => log::warn!("could not stop the delegate shim at {address}: {e}"),
        }
    }
    handoff::stop_orphans();
    let from_bundle = || {
        safefile::read_limited(&bundle.join("address"), 4096, false)
            .ok()
            .flatten()
            .and_then(|b| containerd_compat::classify(&b).ok())
            .map(|r| r.address)
    };
    if let Some(address) = address.map(str::to_owned).or_else(from_bundle) {
        handoff::remove_dead_socket(&address);
    }
}

/// The authoritative record in the state dir, the task's bind sources added to its pod's, then
/// the operator's copy in the bundle. A sandbox start also drops the records of tasks
/// containerd has removed.
fn write_records(
    env: &Env,
    args: &ShimArgs,
    rec: &DecisionRecord,
    sources: &[String],
) -> Result<RecordStore, StartError> {
    let store = RecordStore::open(&env.state, &args.address, &args.namespace, true)
        .map_err(StartError::Store)?
        .ok_or_else(|| StartError::Store(StoreError::BadId(args.namespace.clone())))?;
    if rec.role == "sandbox" {
        if let Some(bundles) = env.bundle.parent() {
            store.collect_garbage(bundles);
        }
    }
    store.write(&args.id, rec).map_err(StartError::Store)?;
    if let Err(e) = store.append_binds(&rec.sandbox_id, sources) {
        store.remove(&args.id);
        return Err(StartError::Store(e));
    }
    if let Err(e) = record::write(&env.bundle, rec) {
        store.remove(&args.id);
        return Err(StartError::Record(e));
    }
    Ok(store)
}

fn policy_ids(policy: Option<&Policy>) -> (Option<String>, Option<String>) {
    match policy {
        Some(p) => (Some(p.digest.clone()), Some(p.source.to_string())),
        None => (None, None),
    }
}

/// The policy's `audit_log`; for a policy that failed to load, the `audit_log` its file names if
/// that can be read from it; else the default.
fn audit_path(policy: Option<&Policy>) -> PathBuf {
    let configured = match policy {
        Some(p) => p.audit_log.clone(),
        // bounded and non-blocking, like `load`: a FIFO or /dev/zero as policy must not hang
        // the refusal either
        None => safefile::read_limited(
            &router_config::policy_path(None),
            safefile::MAX_POLICY_BYTES,
            true,
        )
        .ok()
        .flatten()
        .and_then(|bytes| audit::audit_log_hint(&String::from_utf8_lossy(&bytes))),
    };
    configured.unwrap_or_else(|| PathBuf::from(audit::DEFAULT_AUDIT_LOG))
}

fn write_audit(policy: Option<&Policy>, entry: &AuditEntry) {
    // a policy that did not load caps the log at the defaults
    let cap = policy
        .map(|p| audit::Cap {
            max_bytes: p.audit_log_max_bytes,
            keep: p.audit_log_keep,
        })
        .unwrap_or_default();
    if let Err(e) = audit::append(&audit_path(policy), cap, entry) {
        log::error!(
            "audit line for {} {} not written: {e}",
            entry.role,
            entry.id
        );
    }
}

fn audit_refusal(ctx: &Ctx<'_>, e: &StartError) {
    let inputs = ctx.inputs.as_ref();
    let (digest, source) = policy_ids(ctx.policy.as_ref());
    let sandbox_id = match inputs.map(|i| &i.role) {
        Some(Role::Container { sandbox_id }) => Some(sandbox_id.clone()),
        Some(Role::Sandbox) => Some(ctx.args.id.clone()),
        None => None,
    };
    let rule = e.rule();
    let entry = AuditEntry {
        time: timefmt::now_rfc3339(),
        outcome: "refused",
        role: role_name(inputs),
        namespace: ctx.args.namespace.clone(),
        id: ctx.args.id.clone(),
        sandbox_id,
        k8s_namespace: inputs.and_then(|i| i.k8s_namespace.clone()),
        pod_name: inputs.and_then(|i| i.pod_name.clone()),
        pod_uid: inputs.and_then(|i| i.pod_uid.clone()),
        tenant: e
            .tenant()
            .or_else(|| ctx.decision.as_ref().map(|d| d.tenant.clone())),
        backend: ctx.decision.as_ref().map(|d| d.backend.clone()),
        isolation: ctx
            .decision
            .as_ref()
            .map(|d| d.isolation.as_str().to_owned()),
        handler: ctx.args.handler.clone(),
        rule: rule.clone(),
        reasons: Vec::new(),
        refused_overrides: Vec::new(),
        denials: vec![Denial {
            rule,
            field: e.field(),
        }],
        message: e.to_string(),
        policy_digest: digest,
        policy_source: source,
        decision_us: ctx.started.elapsed().as_micros() as u64,
    };
    write_audit(ctx.policy.as_ref(), &entry);
}

/// Print the refusal as one line on stderr: containerd puts it into the CRI error. No trailing
/// newline when stderr is not a terminal, so the CRI error reads as one line.
pub fn report_refusal(e: &StartError) {
    use std::io::IsTerminal;
    let line = match e {
        StartError::Refused(r) => r.to_string(),
        StartError::Cwd(_)
        | StartError::Record(_)
        | StartError::Store(_)
        | StartError::Backend(_)
        | StartError::Handoff(HandoffError::Exec { .. }) => format!("runtime-router: {e}"),
        _ => format!("runtime-router refused: {e}"),
    };
    let line = line.replace('\n', " ");
    let mut err = io::stderr().lock();
    let _ = if err.is_terminal() {
        writeln!(err, "{line}")
    } else {
        write!(err, "{line}")
    };
}

/// Print the address for containerd (built-in backend).
pub fn print_address(address: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(address.as_bytes())?;
    out.flush()
}

#[cfg(test)]
#[path = "start_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn args(ns: &str, id: &str) -> ShimArgs {
        ShimArgs::parse(
            ["-namespace", ns, "-id", id, "start"]
                .iter()
                .map(std::ffi::OsString::from)
                .collect(),
        )
        .unwrap()
    }

    fn sandbox_record(ns: &str, id: &str, role: &str) -> DecisionRecord {
        DecisionRecord {
            version: RECORD_VERSION,
            id: id.into(),
            namespace: ns.into(),
            role: role.into(),
            sandbox_id: id.into(),
            tenant: "untrusted".into(),
            backend: "kata".into(),
            isolation: "vm".into(),
            rule: "default_tenant".into(),
            reasons: vec![],
            refused_overrides: vec![],
            policy_digest: "sha256:00".into(),
            policy_source: "embedded".into(),
            k8s_namespace: Some("web".into()),
            pod_name: None,
            pod_uid: None,
            decided_at: String::new(),
            target: RecordedBackend::Shim {
                binary: "/bin/true".into(),
                env: BTreeMap::new(),
            },
            relay_to: None,
            handler: None,
        }
    }

    #[test]
    fn sandbox_ids_must_name_a_sibling_bundle() {
        for bad in ["", ".", "..", "../x", "a/b", "x\0y"] {
            assert!(!valid_sandbox_id(bad), "{bad:?}");
        }
        assert!(valid_sandbox_id("0123abcdef"));
        let dir = tempfile::tempdir().unwrap();
        let e = read_sandbox_record(&env_in(dir.path(), "c1"), &args("k8s.io", "c1"), "../etc")
            .unwrap_err();
        assert!(matches!(e, StartError::BadSandboxId { .. }), "{e}");
        assert_eq!(e.rule(), "sandbox-record");
    }

    fn env_in(dir: &Path, id: &str) -> Env {
        Env {
            bundle: dir.join("bundles").join(id),
            state: dir.join("state"),
            policy: Some(dir.join("policy.toml")),
        }
    }

    fn store(dir: &Path, ns: &str) -> RecordStore {
        RecordStore::open(&dir.join("state"), "", ns, true)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_bundle_without_config_json_names_the_sandboxer() {
        // what containerd 2.x gives a shim for a handler with `sandboxer = "shim"`
        let dir = tempfile::tempdir().unwrap();
        let e = read_spec(&dir.path().join("config.json")).unwrap_err();
        assert!(matches!(e, StartError::NoSpec { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("sandboxer = \"shim\"") && msg.contains("config.json"),
            "{msg}"
        );
        assert_eq!(e.rule(), "spec");
    }

    #[test]
    fn container_reads_its_sandbox_record_from_the_state_dir_only() {
        let dir = tempfile::tempdir().unwrap();
        let sb = dir.path().join("bundles/sb1");
        std::fs::create_dir_all(&sb).unwrap();
        let env = env_in(dir.path(), "c1");
        let a = args("k8s.io", "c1");

        let e = read_sandbox_record(&env, &a, "sb1").unwrap_err();
        assert!(matches!(e, StartError::SandboxRecordMissing { .. }), "{e}");
        assert!(e.to_string().contains("no decision record"), "{e}");

        // the bundle's copy is never read
        record::write(&sb, &sandbox_record("k8s.io", "sb1", "sandbox")).unwrap();
        let e = read_sandbox_record(&env, &a, "sb1").unwrap_err();
        assert!(matches!(e, StartError::SandboxRecordMissing { .. }), "{e}");

        let st = store(dir.path(), "k8s.io");
        st.write("sb1", &sandbox_record("k8s.io", "sb1", "sandbox"))
            .unwrap();
        let (rec, sources) = read_sandbox_record(&env, &a, "sb1").unwrap();
        assert_eq!(rec.backend, "kata");
        assert!(sources.is_empty());
        // the pod's bind sources come with it, appended by each task
        st.append_binds("sb1", &["/v/a".into()]).unwrap();
        st.append_binds("sb1", &["/v/b".into(), "/v/c".into()])
            .unwrap();
        let (_, sources) = read_sandbox_record(&env, &a, "sb1").unwrap();
        assert_eq!(sources, ["/v/a", "/v/b", "/v/c"]);

        // a record of another namespace, or of a container, is not the pod's decision
        st.write("sb1", &sandbox_record("other", "sb1", "sandbox"))
            .unwrap();
        let e = read_sandbox_record(&env, &a, "sb1").unwrap_err();
        assert!(matches!(e, StartError::SandboxMismatch { .. }), "{e}");
        st.write("sb1", &sandbox_record("k8s.io", "sb1", "container"))
            .unwrap();
        assert!(matches!(
            read_sandbox_record(&env, &a, "sb1"),
            Err(StartError::SandboxMismatch { .. })
        ));

        std::fs::write(st.path_of("sb1").unwrap(), b"garbage").unwrap();
        let e = read_sandbox_record(&env, &a, "sb1").unwrap_err();
        assert!(matches!(e, StartError::SandboxRecord { .. }), "{e}");
    }

    #[test]
    fn refusal_lines_are_single_lines_with_the_rule() {
        let e = StartError::Handoff(HandoffError::NotOnPath {
            backend: "kata".into(),
            binary: "containerd-shim-kata-v2".into(),
            path: "/usr/bin".into(),
        });
        assert_eq!(e.rule(), "backend-missing");
        assert!(e.to_string().contains("containerd-shim-kata-v2"));
        assert!(!e.to_string().contains('\n'));
    }
}
