//! Recovers the dotted field path at a byte offset of a TOML document, to name the field in errors
//! that serde reports with only a span (unknown keys, wrong types).

use std::ops::Range;

use toml_v1::de::{DeTable, DeValue};
use toml_v1::Spanned;

/// The dotted path (`tenants.web.deny[1]`) of the deepest key or value whose span holds `offset`,
/// or an empty string when the text does not parse or nothing covers the offset.
pub(crate) fn path_at(text: &str, offset: usize) -> String {
    let Ok(doc) = DeTable::parse(text) else {
        return String::new();
    };
    let mut path = String::new();
    walk_table(doc.get_ref(), offset, &mut path);
    path
}

fn contains(span: Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let len = path.len();
        push_key(path, key.get_ref());
        if contains(key.span(), offset) || walk_value(value, offset, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn walk_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut String) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, path) || contains(value.span(), offset),
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_value(v, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
            contains(value.span(), offset)
        }
        _ => contains(value.span(), offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "version = 1\n[tenants.web]\nbackend = \"x\"\ndeny = [\"a\", \"b\"]\nbogus = 1\nenv = { A = \"b\" }\n";
        let at = |needle: &str| path_at(text, text.find(needle).unwrap_or(0));
        assert_eq!(at("version"), "version");
        assert_eq!(at("\"x\""), "tenants.web.backend");
        assert_eq!(at("\"b\""), "tenants.web.deny[1]");
        assert_eq!(at("bogus"), "tenants.web.bogus");
        assert_eq!(at("A ="), "tenants.web.env.A");
    }
}
