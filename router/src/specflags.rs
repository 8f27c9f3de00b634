//! Spec fields the decision only tests, never keeps: a capability set (does it hold every
//! capability?) and a mount's options (is one of them `bind`/`rbind`?). Each is deserialized
//! straight into a few bits, element by element, so parsing `config.json` on the `start` path
//! allocates nothing for the ~40 names a privileged container lists in each of its five sets.

use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// The capabilities every Linux kernel since 3.16 knows (0..=37, up to CAP_AUDIT_READ). A set
/// holding all of them is "all capabilities": CRI's privileged mode grants every capability the
/// host kernel knows, which always includes these.
pub const BASE_CAPABILITIES: [&str; 38] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

/// Capabilities newer kernels added after `BASE_CAPABILITIES` (38..=40). A privileged container
/// on such a kernel holds them too; a set is "all" without them.
pub const NEWER_CAPABILITIES: [&str; 3] = ["CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"];

/// The capabilities a container may hold under the `capabilities` deny rule: the Pod Security
/// Standards' baseline set plus `CAP_NET_RAW`. The router sees the final spec, not what the pod
/// asked to add, and containerd (1.6 through 2.x) grants `CAP_NET_RAW` to every container by
/// default: counting it would refuse every pod that asks for nothing. A tenant that must not have
/// it needs its pods to drop it (the PSS "restricted" profile drops ALL).
pub const BASELINE_CAPABILITIES: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The capabilities a container may keep under the Pod Security Standards' restricted level
/// (drop ALL, add back at most NET_BIND_SERVICE).
pub const RESTRICTED_CAPABILITIES: [&str; 1] = ["CAP_NET_BIND_SERVICE"];

/// The capability that makes a container root on the host in all but name (mount, namespaces,
/// most of the kernel's admin interfaces): a set holding it counts as privileged whatever else
/// it holds, so `add_capabilities: ["ALL"]` is privileged even where the host's bounding set
/// lacks some capability and no set can be "all".
pub const ROOT_EQUIVALENT_CAPABILITY: &str = "CAP_SYS_ADMIN";

/// Bit `i` set: the set holds capability `i` (`BASE_CAPABILITIES`, then `NEWER_CAPABILITIES`);
/// bit 63: the set names a capability this router does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSet(u64);

/// Bit of a name this router does not know.
const UNKNOWN_BIT: u64 = 1 << 63;

fn cap_name(i: usize) -> Option<&'static str> {
    BASE_CAPABILITIES
        .get(i)
        .or_else(|| NEWER_CAPABILITIES.get(i.wrapping_sub(BASE_CAPABILITIES.len())))
        .copied()
}

fn cap_index(name: &str) -> Option<usize> {
    let bare = match (name.get(..4), name.get(4..)) {
        (Some(p), Some(rest)) if p.eq_ignore_ascii_case("CAP_") => rest,
        _ => name,
    };
    BASE_CAPABILITIES
        .iter()
        .chain(NEWER_CAPABILITIES.iter())
        .position(|c| c[4..].eq_ignore_ascii_case(bare))
}

fn mask_of(names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| cap_index(n))
        .fold(0, |m, i| m | (1 << i))
}

impl CapSet {
    const ALL: u64 = (1 << BASE_CAPABILITIES.len()) - 1;

    /// Adds one capability name, spelled `CAP_X` or `X`, in any case.
    fn add(&mut self, name: &str) {
        match cap_index(name) {
            Some(i) => self.0 |= 1 << i,
            None => self.0 |= UNKNOWN_BIT,
        }
    }

    /// Whether the set holds the root-equivalent capability (`CAP_SYS_ADMIN`).
    pub(crate) fn holds_root_equivalent(self) -> bool {
        self.0 & mask_of(&[ROOT_EQUIVALENT_CAPABILITY]) != 0
    }

    /// The first capability of the set beyond the baseline (in kernel order), or
    /// `"an unknown capability"` for a name this router does not know.
    pub(crate) fn first_beyond_baseline(self) -> Option<&'static str> {
        self.first_beyond(&BASELINE_CAPABILITIES)
    }

    /// The first capability of the set beyond what the restricted level lets a container keep
    /// (`RESTRICTED_CAPABILITIES`).
    pub(crate) fn first_beyond_restricted(self) -> Option<&'static str> {
        self.first_beyond(&RESTRICTED_CAPABILITIES)
    }

    fn first_beyond(self, allowed: &[&str]) -> Option<&'static str> {
        let beyond = self.0 & !mask_of(allowed);
        if beyond == 0 {
            return None;
        }
        if beyond & !UNKNOWN_BIT == 0 {
            return Some("an unknown capability");
        }
        cap_name(beyond.trailing_zeros() as usize)
    }

    #[cfg(test)]
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> CapSet {
        let mut set = CapSet::default();
        for n in names {
            set.add(n);
        }
        set
    }

    /// Every base capability is in the set.
    pub(crate) fn is_all(self) -> bool {
        self.0 & Self::ALL == Self::ALL
    }
}

impl<'de> Deserialize<'de> for CapSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CapSet, D::Error> {
        fold_strings(
            d,
            "a list of capability names",
            CapSet::default(),
            |mut set, name| {
                set.add(name);
                set
            },
        )
    }
}

/// Mount options reduced to one fact: whether `bind` or `rbind` is among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BindOption(pub(crate) bool);

impl BindOption {
    fn is_bind(option: &str) -> bool {
        option == "bind" || option == "rbind"
    }

    #[cfg(test)]
    pub(crate) fn from_options<'a>(options: impl IntoIterator<Item = &'a str>) -> BindOption {
        BindOption(options.into_iter().any(Self::is_bind))
    }
}

impl<'de> Deserialize<'de> for BindOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BindOption, D::Error> {
        fold_strings(
            d,
            "a list of mount options",
            BindOption(false),
            |b, option| BindOption(b.0 || BindOption::is_bind(option)),
        )
    }
}

/// Folds a JSON list of strings into `init` with `f`, one element at a time, without keeping (or
/// allocating) the strings: `visit_str` sees escaped ones through the deserializer's scratch
/// buffer too.
fn fold_strings<'de, D, T>(
    d: D,
    expecting: &'static str,
    init: T,
    f: fn(T, &str) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    struct Seq<T> {
        expecting: &'static str,
        init: T,
        f: fn(T, &str) -> T,
    }
    impl<'de, T: Copy> Visitor<'de> for Seq<T> {
        type Value = T;
        fn expecting(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
            out.write_str(self.expecting)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut acc = self.init;
            while let Some(next) = seq.next_element_seed(Element { acc, f: self.f })? {
                acc = next;
            }
            Ok(acc)
        }
    }
    /// One element: the accumulator so far, folded with the element's string.
    struct Element<T> {
        acc: T,
        f: fn(T, &str) -> T,
    }
    impl<'de, T> DeserializeSeed<'de> for Element<T> {
        type Value = T;
        fn deserialize<D2: Deserializer<'de>>(self, d: D2) -> Result<T, D2::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de, T> Visitor<'de> for Element<T> {
        type Value = T;
        fn expecting(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
            out.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            Ok((self.f)(self.acc, s))
        }
    }
    d.deserialize_seq(Seq { expecting, init, f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        let all: Vec<String> = BASE_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        let parsed: CapSet = serde_json::from_value(serde_json::json!(all)).unwrap();
        assert!(parsed.is_all());
        // bare and lower-case spellings, escapes, unknown names and duplicates
        let mut mixed: Vec<String> = BASE_CAPABILITIES
            .iter()
            .map(|c| c[4..].to_ascii_lowercase())
            .collect();
        mixed.push("CAP_PERFMON".into());
        mixed.push("CAP_CHOWN".into());
        let json = serde_json::to_string(&mixed)
            .unwrap()
            .replace("kill", "\\u006bill");
        let parsed: CapSet = serde_json::from_str(&json).unwrap();
        assert!(parsed.is_all());
        // one missing: not all
        let parsed: CapSet = serde_json::from_value(serde_json::json!(&all[1..])).unwrap();
        assert!(!parsed.is_all());
        assert_eq!(
            CapSet::from_names(all.iter().map(String::as_str)),
            CapSet(CapSet::ALL)
        );
        // a name that only looks like a prefix is unknown, not a capability
        assert_eq!(CapSet::from_names(["CAP_", "cap", ""]), CapSet(UNKNOWN_BIT));
        assert!(!CapSet::from_names(["CAP_", "cap", ""]).is_all());
        assert!(serde_json::from_str::<CapSet>("[1]").is_err());
        assert!(serde_json::from_str::<CapSet>("\"CAP_CHOWN\"").is_err());
    }

    #[test]
    fn baseline_and_beyond() {
        let baseline = CapSet::from_names(BASELINE_CAPABILITIES);
        assert_eq!(baseline.first_beyond_baseline(), None);
        assert!(!baseline.holds_root_equivalent());
        let mut with_net = baseline;
        with_net.add("net_admin");
        assert_eq!(with_net.first_beyond_baseline(), Some("CAP_NET_ADMIN"));
        let newer = CapSet::from_names(["CAP_BPF"]);
        assert_eq!(newer.first_beyond_baseline(), Some("CAP_BPF"));
        let unknown = CapSet::from_names(["CAP_CHOWN", "CAP_FUTURE_THING"]);
        assert_eq!(
            unknown.first_beyond_baseline(),
            Some("an unknown capability")
        );
        // every capability but one the host lacks: still root-equivalent
        let all_but: Vec<&str> = BASE_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_RESOURCE")
            .collect();
        let s = CapSet::from_names(all_but);
        assert!(!s.is_all());
        assert!(s.holds_root_equivalent());
        assert_eq!(
            CapSet::from_names(["sys_admin"]).first_beyond_baseline(),
            Some("CAP_SYS_ADMIN")
        );
    }

    #[test]
    fn restricted_keeps_net_bind_service_only() {
        assert_eq!(CapSet::default().first_beyond_restricted(), None);
        assert_eq!(
            CapSet::from_names(["NET_BIND_SERVICE"]).first_beyond_restricted(),
            None
        );
        assert_eq!(
            CapSet::from_names(["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]).first_beyond_restricted(),
            Some("CAP_CHOWN")
        );
        assert_eq!(
            CapSet::from_names(["CAP_NET_RAW"]).first_beyond_restricted(),
            Some("CAP_NET_RAW")
        );
        assert_eq!(
            CapSet::from_names(["CAP_WHATEVER"]).first_beyond_restricted(),
            Some("an unknown capability")
        );
    }

    #[test]
    fn bind_options() {
        let b = |j: &str| serde_json::from_str::<BindOption>(j).map(|b| b.0).ok();
        assert_eq!(b(r#"["rbind","ro"]"#), Some(true));
        assert_eq!(b(r#"["ro","bind"]"#), Some(true));
        assert_eq!(b(r#"["ro","nosuid","binder"]"#), Some(false));
        assert_eq!(b(r#"[]"#), Some(false));
        assert_eq!(b(r#"["\u0062ind"]"#), Some(true));
        assert_eq!(b(r#"[true]"#), None);
        assert!(BindOption::from_options(["rw", "rbind"]).0);
    }
}
