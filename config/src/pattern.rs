//! Namespace patterns: exact names or globs (`*` = any run of characters, `?` = one character),
//! and their specificity (which of several matching patterns wins).
//!
//! Specificity, most specific first: an exact name beats any glob; among globs, the longer literal
//! prefix (characters before the first wildcard) wins; then the one with more literal characters
//! overall. Ties left after that are broken by the caller (see `router_core`).

use std::cmp::Ordering;

/// Whether the pattern contains a wildcard.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether `name` matches `pattern` (whole string).
pub fn matches(pattern: &str, name: &str) -> bool {
    if !is_glob(pattern) {
        return pattern == name;
    }
    glob_match(pattern.as_bytes(), name.as_bytes())
}

/// Iterative glob matching with single-star backtracking: linear in practice, no recursion.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && p[pi] == s[si])) {
            // `?` is byte-wise; namespace names are ASCII (DNS labels).
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Specificity key of a pattern: larger is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact: bool,
    literal_prefix: usize,
    literal_chars: usize,
}

impl Specificity {
    /// Computes the key of `pattern`.
    pub fn of(pattern: &str) -> Specificity {
        let exact = !is_glob(pattern);
        let literal_prefix = pattern.find(['*', '?']).unwrap_or(pattern.len());
        let literal_chars = pattern.chars().filter(|c| *c != '*' && *c != '?').count();
        Specificity {
            exact,
            literal_prefix,
            literal_chars,
        }
    }

    /// Whether the pattern is an exact name.
    pub fn is_exact(&self) -> bool {
        self.exact
    }
}

/// Compares two patterns by specificity (`Greater` = `a` is more specific).
pub fn compare(a: &str, b: &str) -> Ordering {
    Specificity::of(a).cmp(&Specificity::of(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("kube-system", "kube-system", true),
            ("kube-system", "kube-systems", false),
            ("sdewan-*", "sdewan-a", true),
            ("sdewan-*", "sdewan-", true),
            ("sdewan-*", "sdewan", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("team-?", "team-a", true),
            ("team-?", "team-ab", false),
            ("*-prod", "web-prod", true),
            ("*-prod", "web-prod-2", false),
            ("**", "x", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n), want, "pattern {p:?} name {n:?}");
        }
    }

    #[test]
    fn specificity_order() {
        assert_eq!(compare("web", "web*"), Ordering::Greater);
        assert_eq!(compare("web-*", "web*"), Ordering::Greater);
        assert_eq!(compare("web-*", "*-prod"), Ordering::Greater);
        assert_eq!(compare("web-*-x", "web-*"), Ordering::Greater);
        assert_eq!(compare("*", "a*"), Ordering::Less);
    }
}
