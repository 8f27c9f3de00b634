//! Side-by-side benchmarks of the router against containerd's Go `containerd-shim-runc-v2`, on one
//! private containerd, alternating the two sides in one run so that machine noise hits both alike
//! (SPEC §6). Not a test: it prints tables of medians, percentiles and ratios.
//!
//! ```text
//! cargo bench -p router-benches --bench shims -- [MODE ...] [--iterations N]
//! MODE: handoff | builtin | memory | scale | gvisor | all   (default: all)
//! ```
//! - `handoff`: whole-pod start (RunPodSandbox + CreateContainer + StartContainer) through the
//!   router with a `shim` backend naming containerd-shim-runc-v2, vs the same shim registered as its
//!   own handler: the router's routing cost.
//! - `builtin`: the same pod start, and `ctr run --rm ... /bin/true`, with the router's built-in
//!   backend (driving runc) vs containerd-shim-runc-v2.
//! - `memory`: 20 pods held on each side; PSS and private dirty memory of every shim process.
//! - `scale`: 50 pods started with 8 in flight on each side, all held: p50/p99 start latency and
//!   total shim memory.
//! - `gvisor`: pod start in the built-in backend's gVisor (runsc) tier vs its runc tier.
//!
//! Pods use host networking so CNI's (identical, but noisy) bridge setup does not blur the shim's
//! own cost, except in `gvisor`, where both sides get their own network namespace from CNI (an
//! untrusted tenant's pods may not use the host's); containers run `sleep` from the busybox image
//! the harness builds offline.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use router_benches::{memory_of, percentile, ratio, ShimMemory};
use router_integration::{
    procs::ProcInfo, ContainerSpec, Containerd, ContainerdOptions, CriClient, PolicyText,
    RuntimeHandler, BUSYBOX_IMAGE,
};

/// The Go shim's handler name in the bench containerd.
const GO_HANDLER: &str = "runc";
/// The router is containerd's default handler: an empty handler name reaches it.
const ROUTER_HANDLER: &str = "";
/// Kubernetes namespace whose tenant the policy sends to the backend under test.
const NS: &str = "bench";
/// Kubernetes namespace of the gVisor tier.
const NS_GVISOR: &str = "bench-sandboxed";

struct Bench {
    h: Containerd,
    cri: CriClient,
    iterations: usize,
    seq: usize,
    /// Pods share the host's network namespace (no CNI) unless a mode says otherwise.
    host_network: bool,
}

impl Bench {
    async fn start(iterations: usize) -> Result<Bench> {
        let h = Containerd::start(
            ContainerdOptions::with_policy(policy("go-runc"))
                .handler(RuntimeHandler::runc(GO_HANDLER)),
        )
        .await
        .context("start the bench containerd")?;
        h.import_images(NS).await.context("import images for ctr")?;
        let cri = h.cri();
        Ok(Bench {
            h,
            cri,
            iterations,
            seq: 0,
            host_network: true,
        })
    }

    /// Points the `bench` tenant at `backend`; the router reads the policy at every start.
    fn route_bench_to(&self, backend: &str) -> Result<()> {
        self.h
            .set_policy(&policy(backend))
            .context("write policy")?;
        Ok(())
    }

    fn next_name(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    /// RunPodSandbox + CreateContainer + StartContainer; returns the time of each call and the pod id.
    async fn pod_start(&mut self, handler: &str, ns: &str) -> Result<(PodTimes, String)> {
        let name = self.next_name("pod");
        pod_start(&self.h, &self.cri, handler, ns, &name, self.host_network).await
    }

    async fn remove(&self, pod: &str) -> Result<()> {
        self.cri.stop_pod(pod).await?;
        self.cri.remove_pod(pod).await?;
        Ok(())
    }

    /// Alternates `a` and `b` pod starts, removing each pod before the next start.
    async fn alternate(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
    ) -> Result<(Vec<PodTimes>, Vec<PodTimes>)> {
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        // Warm-up: page cache, image unpack, first-use costs on both sides.
        for side in [a, b] {
            let (_, pod) = self.pod_start(side.0, side.1).await?;
            self.remove(&pod).await?;
        }
        for i in 0..self.iterations {
            let order = if i % 2 == 0 { [a, b] } else { [b, a] };
            for side in order {
                let (t, pod) = self.pod_start(side.0, side.1).await?;
                self.remove(&pod).await?;
                if side == a {
                    ta.push(t);
                } else {
                    tb.push(t);
                }
            }
        }
        Ok((ta, tb))
    }

    fn ctr_run_rm(&mut self, runtime: &str) -> Result<Duration> {
        let id = self.next_name("ctr");
        let ctr = self.h.ctr(NS);
        let t0 = Instant::now();
        ctr.run(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            BUSYBOX_IMAGE,
            &id,
            "/bin/true",
        ])
        .with_context(|| format!("ctr run --rm --runtime {runtime}"))?;
        Ok(t0.elapsed())
    }
}

/// The bench policy with the `bench` tenant on `backend`; the harness fills `{dir}`, `{root}` and
/// `{state}` when it writes the file.
/// The bench policy: namespace `bench` on `backend` (the Go shim handed off to, `go-runc`, or
/// the built-in `runc`), `bench-sandboxed` (the default) on built-in gVisor with the flags these
/// machines need (docs/gvisor.md).
fn policy(backend: &str) -> String {
    PolicyText::new("sandboxed")
        .pod_paths("/var/lib/kubelet/pods")
        .shim("go-runc", "containerd-shim-runc-v2", &[], "container")
        .runc()
        .gvisor()
        .tenant("bench", &[NS], backend)
        .list("containerd_namespaces", &[NS])
        .tenant("sandboxed", &[NS_GVISOR], "gvisor")
        .into()
}

/// How long each CRI call of one pod start took, in ms.
#[derive(Clone, Copy)]
struct PodTimes {
    run_pod: f64,
    create: f64,
    start: f64,
}

impl PodTimes {
    fn total(&self) -> f64 {
        self.run_pod + self.create + self.start
    }
}

async fn pod_start(
    h: &Containerd,
    cri: &CriClient,
    handler: &str,
    ns: &str,
    name: &str,
    host_network: bool,
) -> Result<(PodTimes, String)> {
    let pod = h.pod(ns, name).host_network(host_network);
    let sandbox = pod.build();
    let container = ContainerSpec::new("main")
        .in_pod(&pod)
        .command(["sleep", "3600"])
        .build();
    let t0 = Instant::now();
    let id = cri
        .run_pod_with_handler(&sandbox, handler)
        .await
        .with_context(|| format!("RunPodSandbox {ns}/{name} (handler `{handler}`)"))?;
    let t1 = Instant::now();
    let cid = cri
        .create_container(&id, &sandbox, &container)
        .await
        .with_context(|| format!("create container of {ns}/{name}"))?;
    let t2 = Instant::now();
    cri.start_container(&cid)
        .await
        .with_context(|| format!("start container of {ns}/{name}"))?;
    let t3 = Instant::now();
    let times = PodTimes {
        run_pod: ms(t1 - t0),
        create: ms(t2 - t1),
        start: ms(t3 - t2),
    };
    Ok((times, id))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_latency_row(what: &str, ours: &[f64], go: &[f64]) {
    let (m_ours, m_go) = (percentile(ours, 50.0), percentile(go, 50.0));
    println!(
        "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} |",
        m_ours,
        percentile(ours, 90.0),
        m_go,
        percentile(go, 90.0),
        ratio(m_ours, m_go)
    );
}

/// The whole-pod row, then one row per CRI call.
fn print_pod_rows(ours: &[PodTimes], go: &[PodTimes]) {
    let col = |v: &[PodTimes], f: fn(&PodTimes) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    print_latency_row(
        "pod start (RunPodSandbox+Create+Start)",
        &col(ours, PodTimes::total),
        &col(go, PodTimes::total),
    );
    print_latency_row(
        "… RunPodSandbox",
        &col(ours, |t| t.run_pod),
        &col(go, |t| t.run_pod),
    );
    print_latency_row(
        "… CreateContainer",
        &col(ours, |t| t.create),
        &col(go, |t| t.create),
    );
    print_latency_row(
        "… StartContainer",
        &col(ours, |t| t.start),
        &col(go, |t| t.start),
    );
}

fn latency_header(ours: &str, go: &str) {
    println!("| what (ms) | {ours} p50 | {ours} p90 | {go} p50 | {go} p90 | ratio of p50 |");
    println!("|---|---|---|---|---|---|");
}

async fn bench_handoff(b: &mut Bench) -> Result<()> {
    b.route_bench_to("go-runc")?;
    let (router, direct) = b.alternate((ROUTER_HANDLER, NS), (GO_HANDLER, NS)).await?;
    println!("\n### hand-off: router → containerd-shim-runc-v2 vs containerd-shim-runc-v2 directly ({} pods each)\n", b.iterations);
    latency_header("router", "direct");
    print_pod_rows(&router, &direct);
    // What the router leaves running per hand-off pod: nothing on 1.x; on 2.x (the delegate
    // answers bootstrap protocol 3) the pod's task API relay, beside the delegate shim.
    const HELD: usize = 10;
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(b.pod_start(ROUTER_HANDLER, NS).await?.1);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (relays, delegates) = shims_by_kind(&b.h);
    println!(
        "\n{HELD} hand-off pods held: {} delegate shims, {} relays",
        delegates.len(),
        relays.len()
    );
    if !relays.is_empty() {
        let m = memory_table("relay", &relays)?;
        println!(
            "relay per pod: PSS median {:.2} MiB, private dirty median {:.2} MiB (total PSS {:.1} MiB)",
            m.pss_median_mib, m.dirty_median_mib, m.pss_total_mib
        );
    }
    for pod in held {
        b.remove(&pod).await?;
    }
    Ok(())
}

async fn bench_builtin(b: &mut Bench) -> Result<()> {
    b.route_bench_to("runc")?;
    let (ours, go) = b.alternate((ROUTER_HANDLER, NS), (GO_HANDLER, NS)).await?;
    let (mut ctr_ours, mut ctr_go) = (Vec::new(), Vec::new());
    b.ctr_run_rm("io.containerd.router.v2")?;
    b.ctr_run_rm("io.containerd.runc.v2")?;
    for i in 0..b.iterations {
        if i % 2 == 0 {
            ctr_ours.push(ms(b.ctr_run_rm("io.containerd.router.v2")?));
            ctr_go.push(ms(b.ctr_run_rm("io.containerd.runc.v2")?));
        } else {
            ctr_go.push(ms(b.ctr_run_rm("io.containerd.runc.v2")?));
            ctr_ours.push(ms(b.ctr_run_rm("io.containerd.router.v2")?));
        }
    }
    println!(
        "\n### built-in backend (router, runc) vs containerd-shim-runc-v2 ({} runs each)\n",
        b.iterations
    );
    latency_header("built-in", "Go shim");
    print_pod_rows(&ours, &go);
    print_latency_row("`ctr run --rm ... /bin/true`", &ctr_ours, &ctr_go);
    Ok(())
}

/// Shim processes of the bench containerd, split into (built-in router daemons, Go runc shims).
fn shims_by_kind(h: &Containerd) -> (Vec<ProcInfo>, Vec<ProcInfo>) {
    let is = |p: &ProcInfo, bin: &str| p.cmdline.first().is_some_and(|a| a.ends_with(bin));
    let all = h.shims();
    let ours = all
        .iter()
        .filter(|p| is(p, "containerd-shim-router-v2"))
        .cloned()
        .collect();
    let go = all
        .iter()
        .filter(|p| is(p, "containerd-shim-runc-v2"))
        .cloned()
        .collect();
    (ours, go)
}

fn memory_table(label: &str, shims: &[ProcInfo]) -> Result<ShimMemory> {
    let mut pss = Vec::new();
    let mut dirty = Vec::new();
    for p in shims {
        let (r, d) = memory_of(p.pid).with_context(|| format!("{label} shim pid {}", p.pid))?;
        pss.push(r as f64 / 1024.0);
        dirty.push(d as f64 / 1024.0);
    }
    Ok(ShimMemory {
        count: shims.len(),
        pss_median_mib: percentile(&pss, 50.0),
        dirty_median_mib: percentile(&dirty, 50.0),
        pss_total_mib: pss.iter().sum(),
        dirty_total_mib: dirty.iter().sum(),
    })
}

fn print_memory(ours: &ShimMemory, go: &ShimMemory) {
    println!("| shim | shims | PSS median (MiB) | private dirty median (MiB) | PSS total (MiB) | private dirty total (MiB) |");
    println!("|---|---|---|---|---|---|");
    for (name, m) in [("built-in (router)", ours), ("containerd-shim-runc-v2", go)] {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.1} | {:.1} |",
            m.count, m.pss_median_mib, m.dirty_median_mib, m.pss_total_mib, m.dirty_total_mib
        );
    }
    println!(
        "\nratio built-in / Go: PSS median {:.3}, private dirty median {:.3}",
        ratio(ours.pss_median_mib, go.pss_median_mib),
        ratio(ours.dirty_median_mib, go.dirty_median_mib)
    );
}

async fn bench_memory(b: &mut Bench, pods: usize) -> Result<()> {
    b.route_bench_to("runc")?;
    let mut held = Vec::new();
    for i in 0..pods {
        let order = if i % 2 == 0 {
            [ROUTER_HANDLER, GO_HANDLER]
        } else {
            [GO_HANDLER, ROUTER_HANDLER]
        };
        for handler in order {
            held.push(b.pod_start(handler, NS).await?.1);
        }
    }
    // Let both sides settle (Go's runtime grows then trims; ours is steady).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ours, go) = shims_by_kind(&b.h);
    if ours.len() != pods || go.len() != pods {
        bail!(
            "expected {pods} shims of each kind, found {} built-in and {} Go",
            ours.len(),
            go.len()
        );
    }
    let m_ours = memory_table("built-in", &ours)?;
    let m_go = memory_table("Go", &go)?;
    println!("\n### memory: {pods} pods held on each side (one sleeping container each)\n");
    print_memory(&m_ours, &m_go);
    for pod in held {
        b.remove(&pod).await?;
    }
    Ok(())
}

/// Starts `total` pods with `in_flight` at once; returns each pod's start latency and the pod ids.
async fn start_many(
    b: &mut Bench,
    handler: &str,
    total: usize,
    in_flight: usize,
) -> Result<(Vec<f64>, Vec<String>)> {
    let mut names = Vec::new();
    for _ in 0..total {
        names.push(b.next_name("scale"));
    }
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let sem = sem.clone();
        let cri = b.cri.clone();
        let pod = b.h.pod(NS, &name).host_network(true);
        let handler = handler.to_string();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let sandbox = pod.build();
            let container = ContainerSpec::new("main")
                .in_pod(&pod)
                .command(["sleep", "3600"])
                .build();
            let t0 = Instant::now();
            let id = cri.run_pod_with_handler(&sandbox, &handler).await?;
            cri.run_container(&id, &sandbox, &container).await?;
            anyhow::Ok((ms(t0.elapsed()), id))
        });
    }
    let (mut lat, mut ids) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (t, id) = r.context("join pod start")??;
        lat.push(t);
        ids.push(id);
    }
    Ok((lat, ids))
}

async fn bench_scale(b: &mut Bench, total: usize, in_flight: usize) -> Result<()> {
    b.route_bench_to("runc")?;
    println!("\n### scale: {total} pods, {in_flight} in flight, all held, per side\n");
    println!("| shim | p50 start (ms) | p99 start (ms) | wall time (s) | shims | total shim PSS (MiB) | total shim private dirty (MiB) |");
    println!("|---|---|---|---|---|---|---|");
    for (label, handler) in [
        ("built-in (router)", ROUTER_HANDLER),
        ("containerd-shim-runc-v2", GO_HANDLER),
    ] {
        let t0 = Instant::now();
        let (lat, ids) = start_many(b, handler, total, in_flight).await?;
        let wall = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ours, go) = shims_by_kind(&b.h);
        let shims = if handler == ROUTER_HANDLER { ours } else { go };
        let m = memory_table(label, &shims)?;
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            wall,
            m.count,
            m.pss_total_mib,
            m.dirty_total_mib
        );
        for id in ids {
            b.remove(&id).await?;
        }
    }
    Ok(())
}

async fn bench_gvisor(b: &mut Bench) -> Result<()> {
    b.route_bench_to("runc")?;
    b.host_network = false;
    let result = b
        .alternate((ROUTER_HANDLER, NS_GVISOR), (ROUTER_HANDLER, NS))
        .await;
    b.host_network = true;
    let (gvisor, runc) = result?;
    println!("\n### gVisor tier (built-in backend, runsc) vs runc tier (built-in backend, runc) ({} pods each)\n", b.iterations);
    latency_header("gVisor", "runc");
    print_pod_rows(&gvisor, &runc);
    Ok(())
}

/// Per-pod memory of a tier: the pod's shim daemon (the router's built-in backend) and every
/// process below it (for gVisor: runsc's sandbox (the sentry, which runs the pod's processes),
/// its gofer and ptrace stubs; for runc: pause and the container), PSS and private dirty summed
/// per pod. Pods are held together, one sleeping container each. This is what a RuntimeClass's
/// overhead has to cover beyond the containers' own requests.
async fn bench_overhead(b: &mut Bench, pods: usize) -> Result<()> {
    b.route_bench_to("runc")?;
    b.host_network = false;
    let mut rows = Vec::new();
    for (tier, ns) in [("sandbox (gVisor)", NS_GVISOR), ("container (runc)", NS)] {
        let mut held = Vec::new();
        let mut per_pod = Vec::new();
        for _ in 0..pods {
            let before: Vec<i32> = shims_by_kind(&b.h).0.iter().map(|p| p.pid).collect();
            held.push(b.pod_start(ROUTER_HANDLER, ns).await?.1);
            let shim = shims_by_kind(&b.h)
                .0
                .into_iter()
                .find(|p| !before.contains(&p.pid))
                .context("the new pod's shim")?;
            per_pod.push(shim.pid);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let procs = router_integration::procs::list();
        let (mut pss, mut dirty, mut count) = (Vec::new(), Vec::new(), 0);
        for shim in per_pod {
            let tree = router_integration::procs::with_descendants(&[shim], &procs);
            count = tree.len();
            let (mut p, mut d) = (0, 0);
            for pid in tree {
                let (a, c) = memory_of(pid).unwrap_or((0, 0));
                p += a;
                d += c;
            }
            pss.push(p as f64 / 1024.0);
            dirty.push(d as f64 / 1024.0);
        }
        rows.push((
            tier,
            count,
            percentile(&pss, 50.0),
            percentile(&pss, 90.0),
            percentile(&dirty, 50.0),
        ));
        for pod in held {
            b.remove(&pod).await?;
        }
    }
    b.host_network = true;
    println!(
        "\n### per-pod memory by tier ({pods} pods held per tier, one sleeping container each)\n"
    );
    println!(
        "| tier | processes per pod | PSS p50 (MiB) | PSS p90 (MiB) | private dirty p50 (MiB) |"
    );
    println!("|---|---|---|---|---|");
    for (tier, count, p50, p90, d50) in rows {
        println!("| {tier} | {count} | {p50:.1} | {p90:.1} | {d50:.1} |");
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut modes = Vec::new();
    let mut iterations = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                let v = args.next().context("--iterations needs a number")?;
                iterations = v.parse().with_context(|| format!("--iterations `{v}`"))?;
            }
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            "handoff" | "builtin" | "memory" | "scale" | "gvisor" | "overhead" => modes.push(a),
            "all" => modes.extend(["handoff", "builtin", "memory", "scale", "gvisor"].map(String::from)),
            other => bail!("unknown argument `{other}` (modes: handoff builtin memory scale gvisor overhead all; --iterations N)"),
        }
    }
    if modes.is_empty() {
        modes.extend(["handoff", "builtin", "memory", "scale", "gvisor"].map(String::from));
    }
    let mut b = Bench::start(iterations).await?;
    println!(
        "containerd {} — side-by-side, alternating; host: {} cores",
        b.cri.version().await.map(|v| v.1).unwrap_or_default(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut result = Ok(());
    for mode in &modes {
        let r = match mode.as_str() {
            "handoff" => bench_handoff(&mut b).await,
            "builtin" => bench_builtin(&mut b).await,
            "memory" => bench_memory(&mut b, 20).await,
            "scale" => bench_scale(&mut b, 50, 8).await,
            "gvisor" => bench_gvisor(&mut b).await,
            "overhead" => bench_overhead(&mut b, 5).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            eprintln!(
                "{mode}: {e:#}\n--- containerd log tail ---\n{}",
                b.h.log_tail()
            );
            result = Err(e);
            break;
        }
    }
    b.cri.remove_all_pods().await;
    b.h.shutdown()
        .await
        .context("shut the bench containerd down")?;
    result
}
