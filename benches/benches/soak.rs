//! Soak run of the built-in backend (not a test in CI): several hundred pod create/remove cycles
//! on one private containerd, with faults mixed in at random (seeded, so a run can be repeated):
//! the OCI runtime failing `create` or a container's `start`, dying after `create` did its work,
//! failing an `exec`; the pod daemon killed under a running container; gVisor pods whose sandbox
//! fails to start. One long-lived pod stays up throughout and gets a container (and an exec)
//! each cycle, some of whose starts fail. After every cycle the harness's leak check
//! ([`router_integration::leaks`]) must find nothing but the long-lived pod. Prints the leaks
//! found (target 0), the long-lived pod daemon's RSS, PSS and private dirty memory every 25 cycles
//! (target: no growth), and the failures by kind. `--keeper-only` puts every cycle in the
//! long-lived pod (a container, some of whose starts or execs fail), to see whether its daemon's
//! memory follows the number of containers it has served.
//!
//! ```text
//! cargo bench -p router-benches --bench soak -- [--cycles N] [--seed S] [--keeper-only]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use router_integration::faults::FaultyRuntime;
use router_integration::{
    leaks, procs, ContainerSpec, Containerd, ContainerdOptions, K8S_NAMESPACE,
};

const LONG: Duration = Duration::from_secs(120);
const GRACE: Duration = Duration::from_secs(20);

/// What one cycle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Clean,
    CreateFails,
    CreateDies,
    ContainerStartFails,
    ExecFails,
    DaemonKilled,
    GvisorClean,
    GvisorStartFails,
}

impl Kind {
    /// Weighted pick: mostly clean cycles, every fault regularly.
    fn pick(r: u64) -> Kind {
        match r % 20 {
            0..=6 => Kind::Clean,
            7 | 8 => Kind::CreateFails,
            9 | 10 => Kind::CreateDies,
            11 | 12 => Kind::ContainerStartFails,
            13 | 14 => Kind::ExecFails,
            15 | 16 => Kind::DaemonKilled,
            17 => Kind::GvisorClean,
            _ => Kind::GvisorStartFails,
        }
    }

    /// Pick for `--keeper-only`: every cycle is a container in the long-lived pod.
    fn pick_keeper(r: u64) -> Kind {
        match r % 4 {
            0 | 1 => Kind::Clean,
            2 => Kind::ContainerStartFails,
            _ => Kind::ExecFails,
        }
    }
}

/// xorshift64*: small, seeded, good enough to mix faults.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Soak {
    h: Containerd,
    runc: FaultyRuntime,
    runsc: FaultyRuntime,
    seq: usize,
}

/// One process's memory, KiB, from smaps_rollup.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
    private_dirty: u64,
}

impl Mem {
    fn of(pid: i32) -> Result<Mem> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("smaps_rollup of {pid}"))?;
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Mem {
            rss: field("Rss:"),
            pss: field("Pss:"),
            private_dirty: field("Private_Dirty:"),
        })
    }
}

impl Soak {
    fn name(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("soak-{what}-{}", self.seq)
    }

    /// The rule for the next call of `verb` (counts are over the wrapper's whole life).
    fn next_call(rt: &FaultyRuntime, verb: &str, action: &str) -> Result<()> {
        let n = rt.calls(verb) + 1;
        rt.set_rules(&[&format!("{verb} {action} {n}")])?;
        Ok(())
    }

    /// A whole pod: sandbox, one container, one exec, removal. `Ok(true)`: it failed as the fault
    /// wanted (the error named the fault).
    async fn pod_cycle(&mut self, ns: &str, kind: Kind) -> Result<bool> {
        let cri = self.h.cri();
        let name = self.name("pod");
        let pod = self.h.pod(ns, &name);
        let cfg = pod.build();
        let pod_id = match cri.run_pod(&cfg).await {
            Ok(id) => id,
            Err(e) if kind != Kind::Clean && kind != Kind::GvisorClean => {
                let msg = e.message();
                ensure!(
                    msg.contains("injected fault") || msg.contains("create"),
                    "unexpected RunPodSandbox error: {msg}"
                );
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let c = ContainerSpec::new("work")
            .in_pod(&pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.run_container(&pod_id, &cfg, &c.build()).await?;
        cri.wait_log_contains(&cid, "up", LONG).await?;
        let out = cri.exec_sync(&cid, &["echo", "hi"], LONG).await?;
        ensure!(out.stdout.contains("hi"), "exec output {out:?}");
        let mut faulted = false;
        if kind == Kind::DaemonKilled {
            let daemon = self.h.daemon_of(&pod_id)?;
            ensure!(
                procs::kill_all(&[daemon], LONG).is_empty(),
                "daemon survived"
            );
            cri.wait_container_exit(&cid, LONG).await?;
            leaks::dead_shim_cleaned_up(
                &self.h,
                K8S_NAMESPACE,
                &[cid.as_str(), pod_id.as_str()],
                LONG,
            )
            .await?;
            faulted = true;
        }
        cri.stop_pod(&pod_id).await?;
        cri.remove_pod(&pod_id).await?;
        Ok(faulted)
    }

    /// A container (and an exec) in the long-lived pod; `fault`: its start or exec fails.
    async fn keeper_cycle(
        &mut self,
        pod: &router_integration::PodSpec,
        pod_id: &str,
        kind: Kind,
    ) -> Result<bool> {
        let cri = self.h.cri();
        let cfg = pod.build();
        let name = self.name("c");
        let c = ContainerSpec::new(&name)
            .in_pod(pod)
            .shell("echo up; exec sleep 3600");
        let cid = cri.create_container(pod_id, &cfg, &c.build()).await?;
        let mut faulted = false;
        if kind == Kind::ContainerStartFails {
            Self::next_call(&self.runc, "start", "fail")?;
            let r = cri.start_container(&cid).await;
            self.runc.set_rules(&[])?;
            match r {
                Ok(()) => bail!("start succeeded despite the fault"),
                Err(e) => ensure!(e.message().contains("injected fault"), "{e}"),
            }
            faulted = true;
        } else {
            cri.start_container(&cid).await?;
            cri.wait_log_contains(&cid, "up", LONG).await?;
            if kind == Kind::ExecFails {
                Self::next_call(&self.runc, "exec", "fail")?;
                let r = cri.exec_sync(&cid, &["echo", "x"], LONG).await;
                self.runc.set_rules(&[])?;
                ensure!(r.is_err(), "exec succeeded despite the fault");
                faulted = true;
            }
            let out = cri.exec_sync(&cid, &["echo", "hi"], LONG).await?;
            ensure!(out.stdout.contains("hi"), "exec output {out:?}");
            cri.stop_container(&cid, 0).await?;
        }
        cri.remove_container(&cid).await?;
        Ok(faulted)
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cycles: usize = arg("--cycles").and_then(|s| s.parse().ok()).unwrap_or(300);
    let seed: u64 = arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(11);
    let keeper_only = std::env::args().any(|a| a == "--keeper-only");
    let h = Containerd::start(ContainerdOptions::with_policy(
        router_integration::faults::faults_policy(),
    ))
    .await?;
    let runc = FaultyRuntime::install(
        &h.dir().join("faults-runc"),
        "runc",
        Path::new("/usr/sbin/runc"),
    )?;
    let runsc = FaultyRuntime::install(
        &h.dir().join("faults-runsc"),
        "runsc",
        Path::new("/usr/bin/runsc"),
    )?;
    let mut soak = Soak {
        h,
        runc,
        runsc,
        seq: 0,
    };
    let result = run(&mut soak, cycles, seed, keeper_only).await;
    let teardown = soak.h.shutdown().await;
    result?;
    teardown?;
    Ok(())
}

async fn run(soak: &mut Soak, cycles: usize, seed: u64, keeper_only: bool) -> Result<()> {
    let cri = soak.h.cri();
    let keeper = soak.h.pod("kube-system", "soak-keeper");
    let keeper_id = cri.run_pod(&keeper.build()).await?;
    let daemon = soak.h.daemon_of(&keeper_id)?;
    // Warm the daemon up (first container, first exec) before its memory is taken.
    soak.keeper_cycle(&keeper, &keeper_id, Kind::Clean).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mem0 = Mem::of(daemon)?;
    // (cycle, containers the long-lived pod has served, its daemon's memory then)
    let mut series: Vec<(usize, usize, Mem)> = vec![(0, 1, mem0)];
    let mut keeper_containers = 1usize;
    let mut scope = soak.h.leak_scope();
    scope.keep_ids.insert(keeper_id.clone());

    let mut rng = Rng(seed.max(1));
    let mut by_kind: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    let mut errors: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    let mut leaked: BTreeSet<String> = BTreeSet::new();
    let mut leak_cycles = 0usize;
    let started = Instant::now();
    for i in 0..cycles {
        let kind = if keeper_only {
            Kind::pick_keeper(rng.next())
        } else {
            Kind::pick(rng.next())
        };
        let outcome = match kind {
            // `--keeper-only` picks only these three kinds, all in the long-lived pod.
            Kind::Clean if keeper_only => {
                keeper_containers += 1;
                soak.keeper_cycle(&keeper, &keeper_id, kind).await
            }
            Kind::ContainerStartFails | Kind::ExecFails => {
                keeper_containers += 1;
                soak.keeper_cycle(&keeper, &keeper_id, kind).await
            }
            Kind::Clean | Kind::DaemonKilled => soak.pod_cycle("kube-system", kind).await,
            Kind::CreateFails => {
                Soak::next_call(&soak.runc, "create", "fail")?;
                let r = soak.pod_cycle("kube-system", kind).await;
                soak.runc.set_rules(&[])?;
                r
            }
            Kind::CreateDies => {
                Soak::next_call(&soak.runc, "create", "die")?;
                let r = soak.pod_cycle("kube-system", kind).await;
                soak.runc.set_rules(&[])?;
                r
            }
            Kind::GvisorClean => soak.pod_cycle("tenant-a", kind).await,
            Kind::GvisorStartFails => {
                Soak::next_call(&soak.runsc, "start", "fail")?;
                let r = soak.pod_cycle("tenant-a", kind).await;
                soak.runsc.set_rules(&[])?;
                r
            }
        };
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        match outcome {
            Ok(true) => entry.1 += 1,
            Ok(false) => {}
            Err(e) => errors
                .entry(kind)
                .or_default()
                .push(format!("cycle {i}: {e:#}")),
        }
        // A leak is reported once: later cycles wait only for new ones.
        let found = tokio::task::spawn_blocking({
            let scope = scope.clone();
            let known = leaked.clone();
            move || {
                let deadline = Instant::now() + GRACE;
                loop {
                    let mut found = leaks::find(&scope);
                    found.retain(|l| !known.contains(l));
                    if found.is_empty() || Instant::now() >= deadline {
                        return found;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
        .await?;
        if !found.is_empty() {
            leak_cycles += 1;
            eprintln!("cycle {i} ({kind:?}) leaked:\n  {}", found.join("\n  "));
            leaked.extend(found);
        }
        if (i + 1) % 25 == 0 {
            eprintln!("{} cycles, {:.0}s", i + 1, started.elapsed().as_secs_f64());
            series.push((i + 1, keeper_containers, Mem::of(daemon)?));
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mem1 = Mem::of(daemon)?;
    series.push((cycles, keeper_containers, mem1));
    cri.stop_pod(&keeper_id).await?;
    cri.remove_pod(&keeper_id).await?;

    println!(
        "soak: {cycles} cycles, seed {seed}, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<22} {:>7} {:>16} {:>11}",
        "kind", "cycles", "failed as meant", "unexpected"
    );
    for (kind, (n, faulted)) in &by_kind {
        let bad = errors.get(kind).map_or(0, Vec::len);
        println!("{:<22} {n:>7} {faulted:>16} {bad:>11}", format!("{kind:?}"));
    }
    for (kind, errs) in &errors {
        for e in errs.iter().take(5) {
            println!("  unexpected {kind:?}: {}", e.lines().next().unwrap_or(""));
        }
    }
    println!(
        "leaks: {} distinct, in {leak_cycles} cycles (target 0)",
        leaked.len()
    );
    for l in leaked.iter().take(20) {
        println!("  {l}");
    }
    println!(
        "long-lived pod daemon {daemon}: RSS {} -> {} KiB, PSS {} -> {} KiB, private dirty {} -> {} KiB (target: no growth)",
        mem0.rss, mem1.rss, mem0.pss, mem1.pss, mem0.private_dirty, mem1.private_dirty
    );
    println!(
        "{:>6} {:>11} {:>9} {:>9} {:>14}",
        "cycle", "containers", "RSS KiB", "PSS KiB", "priv dirty KiB"
    );
    for (cycle, served, m) in &series {
        println!(
            "{cycle:>6} {served:>11} {:>9} {:>9} {:>14}",
            m.rss, m.pss, m.private_dirty
        );
    }
    Ok(())
}
