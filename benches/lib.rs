//! Helpers of the benchmarks (the benchmarks themselves are in `benches/`): small statistics and
//! `/proc` memory readings used by the side-by-side runs.

use std::io;

/// The `p`-th percentile (nearest rank) of `xs`; 0 for an empty slice.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `a / b`, or NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

/// Memory figures of a set of shim processes: PSS (each shared page counted once across the
/// processes sharing it) and private dirty memory (what the process alone costs). RSS is not
/// reported: it counts every shared clean page in every process that maps it.
pub struct ShimMemory {
    pub count: usize,
    pub pss_median_mib: f64,
    pub dirty_median_mib: f64,
    pub pss_total_mib: f64,
    pub dirty_total_mib: f64,
}

/// `(Pss, Private_Dirty)` of a process in KiB, from `/proc/PID/smaps_rollup`.
pub fn memory_of(pid: i32) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((field_kib(&text, "Pss:"), field_kib(&text, "Private_Dirty:")))
}

fn field_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&xs, 50.0), 3.0);
        assert_eq!(percentile(&xs, 99.0), 5.0);
        assert_eq!(percentile(&xs, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn smaps_fields() {
        let t = "Rss:                1234 kB\nPss:   9 kB\nPrivate_Dirty:       56 kB\n";
        assert_eq!(field_kib(t, "Rss:"), 1234);
        assert_eq!(field_kib(t, "Private_Dirty:"), 56);
        assert_eq!(field_kib(t, "Swap:"), 0);
    }
}
