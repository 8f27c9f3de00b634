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

/// Bit `i` set: the set holds `BASE_CAPABILITIES[i]` (names newer kernels added are ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSet(u64);

impl CapSet {
    const ALL: u64 = (1 << BASE_CAPABILITIES.len()) - 1;

    /// Adds one capability name, spelled `CAP_X` or `X`, in any case.
    fn add(&mut self, name: &str) {
        let bare = match (name.get(..4), name.get(4..)) {
            (Some(p), Some(rest)) if p.eq_ignore_ascii_case("CAP_") => rest,
            _ => name,
        };
        if let Some(i) = BASE_CAPABILITIES
            .iter()
            .position(|c| c[4..].eq_ignore_ascii_case(bare))
        {
            self.0 |= 1 << i;
        }
    }

    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> CapSet {
        let mut set = CapSet::default();
        for n in names {
            set.add(n);
        }
        set
    }

    /// Every base capability is in the set.
    pub(crate) fn is_all(self) -> bool {
        self.0 == Self::ALL
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
        // a name that only looks like a prefix
        assert_eq!(CapSet::from_names(["CAP_", "cap", ""]), CapSet::default());
        assert!(serde_json::from_str::<CapSet>("[1]").is_err());
        assert!(serde_json::from_str::<CapSet>("\"CAP_CHOWN\"").is_err());
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
