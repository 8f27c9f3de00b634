//! Task metrics: one sample from the runtime's `events --stats` (runc's JSON `Stats`) turned into
//! containerd's cgroup metrics message, `io.containerd.cgroups.v1.Metrics` on a cgroup v1 (or
//! hybrid) host and `io.containerd.cgroups.v2.Metrics` on a unified host — what CRI's
//! ContainerStats reads (CPU usage, memory working set).

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use serde_json::Value;

use super::BuiltinError;

const V1_URL: &str = "io.containerd.cgroups.v1.Metrics";
const V2_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// Whether this host mounts the unified cgroup v2 hierarchy at /sys/fs/cgroup.
pub fn host_is_cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

fn raw(v: &Value, key: &str) -> u64 {
    u(v, &["memory", "raw", key])
}

fn entry(v: &Value, key: &str) -> v1::MemoryEntry {
    v1::MemoryEntry {
        limit: u(v, &["memory", key, "limit"]),
        usage: u(v, &["memory", key, "usage"]),
        max: u(v, &["memory", key, "max"]),
        failcnt: u(v, &["memory", key, "failcnt"]),
        ..Default::default()
    }
}

/// cgroup v1 metrics from runc's stats JSON.
pub fn to_v1(s: &Value) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let per_cpu = s
        .pointer("/cpu/usage/percpu")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    m.cpu = Some(v1::CPUStat {
        usage: Some(v1::CPUUsage {
            total: u(s, &["cpu", "usage", "total"]),
            kernel: u(s, &["cpu", "usage", "kernel"]),
            user: u(s, &["cpu", "usage", "user"]),
            per_cpu,
            ..Default::default()
        })
        .into(),
        throttling: Some(v1::Throttle {
            periods: u(s, &["cpu", "throttling", "periods"]),
            throttled_periods: u(s, &["cpu", "throttling", "throttled_periods"]),
            throttled_time: u(s, &["cpu", "throttling", "throttled_time"]),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
    .into();
    m.memory = Some(v1::MemoryStat {
        cache: raw(s, "cache"),
        rss: raw(s, "rss"),
        rss_huge: raw(s, "rss_huge"),
        mapped_file: raw(s, "mapped_file"),
        dirty: raw(s, "dirty"),
        writeback: raw(s, "writeback"),
        pg_pg_in: raw(s, "pgpgin"),
        pg_pg_out: raw(s, "pgpgout"),
        pg_fault: raw(s, "pgfault"),
        pg_maj_fault: raw(s, "pgmajfault"),
        inactive_anon: raw(s, "inactive_anon"),
        active_anon: raw(s, "active_anon"),
        inactive_file: raw(s, "inactive_file"),
        active_file: raw(s, "active_file"),
        unevictable: raw(s, "unevictable"),
        hierarchical_memory_limit: raw(s, "hierarchical_memory_limit"),
        hierarchical_swap_limit: raw(s, "hierarchical_memsw_limit"),
        total_cache: raw(s, "total_cache"),
        total_rss: raw(s, "total_rss"),
        total_rss_huge: raw(s, "total_rss_huge"),
        total_mapped_file: raw(s, "total_mapped_file"),
        total_dirty: raw(s, "total_dirty"),
        total_writeback: raw(s, "total_writeback"),
        total_pg_pg_in: raw(s, "total_pgpgin"),
        total_pg_pg_out: raw(s, "total_pgpgout"),
        total_pg_fault: raw(s, "total_pgfault"),
        total_pg_maj_fault: raw(s, "total_pgmajfault"),
        total_inactive_anon: raw(s, "total_inactive_anon"),
        total_active_anon: raw(s, "total_active_anon"),
        total_inactive_file: raw(s, "total_inactive_file"),
        total_active_file: raw(s, "total_active_file"),
        total_unevictable: raw(s, "total_unevictable"),
        usage: Some(entry(s, "usage")).into(),
        swap: Some(entry(s, "swap")).into(),
        kernel: Some(entry(s, "kernel")).into(),
        kernel_tcp: Some(entry(s, "kernelTCP")).into(),
        ..Default::default()
    })
    .into();
    m.pids = Some(v1::PidsStat {
        current: u(s, &["pids", "current"]),
        limit: u(s, &["pids", "limit"]),
        ..Default::default()
    })
    .into();
    if let Some(list) = s
        .pointer("/blkio/ioServiceBytesRecursive")
        .and_then(Value::as_array)
    {
        let mut blkio = v1::BlkIOStat::new();
        blkio.io_service_bytes_recursive = list
            .iter()
            .map(|e| v1::BlkIOEntry {
                op: e.get("op").and_then(Value::as_str).unwrap_or("").to_owned(),
                major: u(e, &["major"]),
                minor: u(e, &["minor"]),
                value: u(e, &["value"]),
                ..Default::default()
            })
            .collect();
        m.blkio = Some(blkio).into();
    }
    m
}

/// cgroup v2 metrics from runc's stats JSON (runc maps v2 files onto the same shape; `raw`
/// holds memory.stat's v2 keys).
pub fn to_v2(s: &Value) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    m.cpu = Some(v2::CPUStat {
        usage_usec: u(s, &["cpu", "usage", "total"]) / 1000,
        user_usec: u(s, &["cpu", "usage", "user"]) / 1000,
        system_usec: u(s, &["cpu", "usage", "kernel"]) / 1000,
        nr_periods: u(s, &["cpu", "throttling", "periods"]),
        nr_throttled: u(s, &["cpu", "throttling", "throttled_periods"]),
        throttled_usec: u(s, &["cpu", "throttling", "throttled_time"]) / 1000,
        ..Default::default()
    })
    .into();
    m.memory = Some(v2::MemoryStat {
        anon: raw(s, "anon"),
        file: raw(s, "file"),
        kernel_stack: raw(s, "kernel_stack"),
        slab: raw(s, "slab"),
        sock: raw(s, "sock"),
        shmem: raw(s, "shmem"),
        file_mapped: raw(s, "file_mapped"),
        file_dirty: raw(s, "file_dirty"),
        inactive_anon: raw(s, "inactive_anon"),
        active_anon: raw(s, "active_anon"),
        inactive_file: raw(s, "inactive_file"),
        active_file: raw(s, "active_file"),
        unevictable: raw(s, "unevictable"),
        pgfault: raw(s, "pgfault"),
        pgmajfault: raw(s, "pgmajfault"),
        usage: u(s, &["memory", "usage", "usage"]),
        usage_limit: u(s, &["memory", "usage", "limit"]),
        max_usage: u(s, &["memory", "usage", "max"]),
        swap_usage: u(s, &["memory", "swap", "usage"]),
        swap_limit: u(s, &["memory", "swap", "limit"]),
        ..Default::default()
    })
    .into();
    m.pids = Some(v2::PidsStat {
        current: u(s, &["pids", "current"]),
        limit: u(s, &["pids", "limit"]),
        ..Default::default()
    })
    .into();
    m
}

/// The metrics message for this host, packed in an `Any`.
pub fn to_any(s: &Value, cgroup_v2: bool) -> Result<Any, BuiltinError> {
    let (url, bytes) = if cgroup_v2 {
        (V2_URL, to_v2(s).write_to_bytes())
    } else {
        (V1_URL, to_v1(s).write_to_bytes())
    };
    let value = bytes.map_err(|e| BuiltinError::Unsupported(format!("encode metrics: {e}")))?;
    Ok(Any {
        type_url: url.to_owned(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"cpu":{"usage":{"total":123456789,"percpu":[100,200],"kernel":1000,"user":2000},
      "throttling":{"periods":1}},"memory":{"cache":10,"usage":{"limit":9223372036854771712,"usage":4096000,"max":5000000,"failcnt":0},
      "swap":{"limit":0,"failcnt":0},"raw":{"total_inactive_file":1000,"rss":3000,"inactive_file":77}},
      "pids":{"current":3},"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":512}]},"hugetlb":{"2MB":{"failcnt":0}}}"#;

    #[test]
    fn v1_carries_cpu_memory_and_pids() {
        let v: Value = serde_json::from_str(SAMPLE).unwrap();
        let m = to_v1(&v);
        assert_eq!(m.cpu.usage.total, 123456789);
        assert_eq!(m.cpu.usage.per_cpu, vec![100, 200]);
        assert_eq!(m.memory.usage.usage, 4096000);
        assert_eq!(m.memory.total_inactive_file, 1000);
        assert_eq!(m.memory.rss, 3000);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 512);
        let any = to_any(&v, false).unwrap();
        assert_eq!(any.type_url, V1_URL);
        let back = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(back.cpu.usage.total, 123456789);
    }

    #[test]
    fn v2_uses_microseconds() {
        let v: Value = serde_json::from_str(SAMPLE).unwrap();
        let m = to_v2(&v);
        assert_eq!(m.cpu.usage_usec, 123456);
        assert_eq!(m.memory.usage, 4096000);
        assert_eq!(m.memory.inactive_file, 77);
        assert_eq!(to_any(&v, true).unwrap().type_url, V2_URL);
    }

    #[test]
    fn missing_fields_are_zero() {
        let m = to_v1(&Value::Null);
        assert_eq!(m.cpu.usage.total, 0);
        assert_eq!(m.memory.usage.usage, 0);
    }
}
