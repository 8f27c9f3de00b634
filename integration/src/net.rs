//! The pod network of one harness: a documentation-range subnet leased for the harness's lifetime
//! (so parallel harnesses, even from different test processes, do not put the same subnet on two
//! bridges), a unique bridge name, and removal of that bridge at teardown.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// Subnets handed out to harnesses, all from the documentation ranges (RFC 5737).
pub const SUBNETS: [&str; 6] = [
    "192.0.2.0/25",
    "192.0.2.128/25",
    "198.51.100.0/25",
    "198.51.100.128/25",
    "203.0.113.0/25",
    "203.0.113.128/25",
];

/// Directory of the lock files that lease [`SUBNETS`] between processes.
pub const LOCK_DIR: &str = "/run/runtime-router-harness";

/// A subnet held by this harness until dropped (an advisory `flock`, released by the kernel even
/// if the process dies).
#[derive(Debug)]
pub struct SubnetLease {
    /// The subnet in CIDR notation.
    pub subnet: String,
    _lock: Option<Flock<File>>,
}

impl SubnetLease {
    /// Leases the first free subnet of [`SUBNETS`]. When all are taken, shares one (logged): pods
    /// still get their own network namespace and address, only host routing to them is ambiguous.
    pub fn acquire() -> SubnetLease {
        let _ = std::fs::create_dir_all(LOCK_DIR);
        let routes = host_routes();
        for (i, subnet) in SUBNETS.iter().enumerate() {
            if overlaps_any(subnet, &routes) {
                // e.g. a test machine whose own uplink sits in 192.0.2.0/24: a pod there could be
                // given the host's address, and the host's route would shadow the bridge's.
                log::info!("skipping harness subnet {subnet}: it overlaps a route of this host");
                continue;
            }
            let path = Path::new(LOCK_DIR).join(format!("subnet-{i}.lock"));
            let Ok(file) = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                return SubnetLease {
                    subnet: subnet.to_string(),
                    _lock: Some(lock),
                };
            }
        }
        let free: Vec<&str> = SUBNETS
            .iter()
            .copied()
            .filter(|s| !overlaps_any(s, &routes))
            .collect();
        let pool = if free.is_empty() {
            &SUBNETS[..]
        } else {
            &free[..]
        };
        let shared = pool[std::process::id() as usize % pool.len()];
        log::warn!("all harness subnets are leased; sharing {shared}");
        SubnetLease::fixed(shared)
    }

    /// A subnet chosen by the caller, not leased.
    pub fn fixed(subnet: &str) -> SubnetLease {
        SubnetLease {
            subnet: subnet.to_string(),
            _lock: None,
        }
    }
}

/// `(network, mask)` of an IPv4 CIDR such as `192.0.2.0/25`, host byte order.
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, mask))
}

/// The host's IPv4 routes other than the default route, as `(network, mask)`, read from
/// `/proc/net/route` (hex, little-endian as the kernel prints it). Bridges this harness made are
/// included too, which is harmless: their subnets are leased anyway.
fn host_routes() -> Vec<(u32, u32)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then_some((dest & mask, mask))
        })
        .collect()
}

/// Whether `cidr` shares any address with one of `routes`.
fn overlaps_any(cidr: &str, routes: &[(u32, u32)]) -> bool {
    let Some((net, mask)) = parse_cidr(cidr) else {
        return false;
    };
    routes.iter().any(|&(rnet, rmask)| {
        let common = mask & rmask; // the shorter prefix decides
        net & common == rnet & common
    })
}

/// A bridge name unique to this process and call (at most 15 bytes, the kernel's limit).
pub fn unique_bridge_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("rrh{:x}x{:x}", pid & 0xff_ffff, n & 0xfff)
}

/// Deletes a network link if it exists. Returns an error message when `ip` fails for another
/// reason than the link being absent.
pub fn delete_link(name: &str) -> Result<(), String> {
    if !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["link", "delete", name])
        .output()
        .map_err(|e| format!("cannot run `ip link delete {name}`: {e}"))?;
    if out.status.success() || !Path::new("/sys/class/net").join(name).exists() {
        Ok(())
    } else {
        Err(format!(
            "`ip link delete {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_and_differ() {
        let a = unique_bridge_name();
        let b = unique_bridge_name();
        assert_ne!(a, b);
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
    }

    #[test]
    fn two_leases_differ_while_held() {
        let a = SubnetLease::acquire();
        let b = SubnetLease::acquire();
        assert!(SUBNETS.contains(&a.subnet.as_str()));
        // Both are held by this process through separate open files, so flock keeps them apart
        // unless every slot is taken by other harnesses.
        if a._lock.is_some() && b._lock.is_some() {
            assert_ne!(a.subnet, b.subnet);
        }
    }

    #[test]
    fn subnet_overlap_with_host_routes() {
        let eth0 = parse_cidr("192.0.2.0/24").into_iter().collect::<Vec<_>>();
        assert!(overlaps_any("192.0.2.0/25", &eth0));
        assert!(overlaps_any("192.0.2.128/25", &eth0));
        assert!(!overlaps_any("198.51.100.0/25", &eth0));
        let wide = parse_cidr("192.0.0.0/16").into_iter().collect::<Vec<_>>();
        assert!(overlaps_any("192.0.2.0/25", &wide));
        assert!(!overlaps_any("203.0.113.0/25", &wide));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
    }

    #[test]
    fn deleting_a_missing_link_is_fine() {
        assert_eq!(delete_link("rrh-absent0"), Ok(()));
    }
}
