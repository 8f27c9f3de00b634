//! The routing decision as `start` runs it: read and parse the policy file (50 tenants), read and
//! parse a ~10 KB CRI sandbox `config.json`, extract inputs, decide.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn decide_once(policy_path: &Path, bundle_config: &Path) -> router_core::Decision {
    let policy = match router_config::load(Some(policy_path)) {
        Ok(p) => p,
        Err(e) => panic!("fixture policy: {e}"),
    };
    let bytes = match std::fs::read(bundle_config) {
        Ok(b) => b,
        Err(e) => panic!("fixture spec: {e}"),
    };
    let inputs = match router_core::inputs_from_config_json(&bytes, "k8s.io", "sandbox-1") {
        Ok(i) => i,
        Err(e) => panic!("fixture spec: {e}"),
    };
    match router_core::decide_sandbox(&policy, &inputs) {
        Ok(d) => d,
        Err(e) => panic!("fixture refused: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let policy = fixture("policy-50-tenants.toml");
    let spec = fixture("sandbox-config.json");
    // The fixture pod is in tenant `shop-web` and raises itself to `kata-qemu`.
    let d = decide_once(&policy, &spec);
    assert_eq!(
        (d.tenant.as_str(), d.backend.as_str()),
        ("shop-web", "kata-qemu")
    );

    c.bench_function(
        "decision_path/read+parse policy(50 tenants)+spec(10KB)+decide",
        |b| b.iter(|| black_box(decide_once(black_box(&policy), black_box(&spec)))),
    );

    let text = std::fs::read_to_string(&policy).unwrap_or_default();
    c.bench_function("parts/parse policy(50 tenants)", |b| {
        b.iter(|| black_box(router_config::parse(black_box(&text), &policy).is_ok()))
    });
    c.bench_function("parts/load policy (cached)", |b| {
        b.iter(|| black_box(router_config::load(Some(black_box(&policy))).is_ok()))
    });
    c.bench_function("parts/sha256 policy text", |b| {
        b.iter(|| black_box(router_config::digest(black_box(text.as_bytes()))))
    });
    let bytes = std::fs::read(&spec).unwrap_or_default();
    c.bench_function("parts/inputs_from_config_json(10KB)", |b| {
        b.iter(|| {
            black_box(
                router_core::inputs_from_config_json(black_box(&bytes), "k8s.io", "x").is_ok(),
            )
        })
    });
    c.bench_function(
        "parts/parse_spec+inputs_from_spec(10KB) (full oci-spec model)",
        |b| {
            b.iter(|| {
                black_box(
                    router_core::parse_spec(black_box(&bytes))
                        .ok()
                        .and_then(|s| router_core::inputs_from_spec(&s, "k8s.io", "x").ok())
                        .is_some(),
                )
            })
        },
    );
    let pol = router_config::load(Some(&policy)).ok();
    let inputs = router_core::inputs_from_config_json(&bytes, "k8s.io", "x").ok();
    if let (Some(pol), Some(inputs)) = (pol, inputs) {
        c.bench_function("parts/decide_sandbox", |b| {
            b.iter(|| {
                black_box(router_core::decide_sandbox(black_box(&pol), black_box(&inputs)).is_ok())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
