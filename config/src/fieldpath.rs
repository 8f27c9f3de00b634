//! Recovers the dotted field path at a byte offset of a TOML document, to name the field in errors
//! that serde reports with only a span (unknown keys, wrong types).

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// The dotted path (`tenants.web.deny[1]`) of the deepest key or value whose span holds `offset`,
/// or an empty string when the text does not parse or nothing covers the offset.
pub(crate) fn path_at(text: &str, offset: usize) -> String {
    let Ok(doc) = ImDocument::parse(text) else {
        return String::new();
    };
    let mut path = String::new();
    walk_table(doc.as_table(), offset, &mut path);
    path
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1))
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn walk_table(table: &Table, offset: usize, path: &mut String) -> bool {
    for (name, item) in table.iter() {
        let key_span = table.key(name).and_then(|k| k.span());
        if contains(key_span, offset) {
            push_key(path, name);
            return true;
        }
        let len = path.len();
        push_key(path, name);
        if walk_item(item, offset, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn walk_item(item: &Item, offset: usize, path: &mut String) -> bool {
    match item {
        Item::Table(t) => walk_table(t, offset, path) || contains(t.span(), offset),
        Item::Value(v) => walk_value(v, offset, path),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_table(t, offset, path) || contains(t.span(), offset) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        Item::None => false,
    }
}

fn walk_value(value: &Value, offset: usize, path: &mut String) -> bool {
    match value {
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_value(v, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
            contains(a.span(), offset)
        }
        Value::InlineTable(t) => {
            for (name, v) in t.iter() {
                let key_span = t.key(name).and_then(|k| k.span());
                let len = path.len();
                push_key(path, name);
                if contains(key_span, offset) || walk_value(v, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
            contains(t.span(), offset)
        }
        v => contains(v.span(), offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text =
            "version = 1\n[tenants.web]\nbackend = \"x\"\ndeny = [\"a\", \"b\"]\nbogus = 1\n";
        let at = |needle: &str| path_at(text, text.find(needle).unwrap_or(0));
        assert_eq!(at("version"), "version");
        assert_eq!(at("\"x\""), "tenants.web.backend");
        assert_eq!(at("\"b\""), "tenants.web.deny[1]");
        assert_eq!(at("bogus"), "tenants.web.bogus");
    }
}
