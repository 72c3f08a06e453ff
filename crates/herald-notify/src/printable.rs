//! Text from the network or the database made safe for a terminal or a log line: control
//! characters (C0 such as ESC, CR and LF, DEL, C1 such as CSI) and the bidirectional overrides
//! are written escaped (`\u{1b}`, `\n`), so they can neither drive the terminal nor forge lines.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character escaped; borrowed when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if dangerous(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Every string inside a JSON document made `printable` (keys too).
pub fn printable_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(escaped) = printable(text) {
                *text = escaped;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(printable_json),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut inner) in entries {
                printable_json(&mut inner);
                map.insert(printable(&key).into_owned(), inner);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("plain text, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}]0;owned\u{7}b"), "a\\u{1b}]0;owned\\u{7}b");
        assert_eq!(printable("line\r\nforged"), "line\\r\\nforged");
        assert_eq!(printable("tab\there"), "tab\\there");
        assert_eq!(printable("c1 \u{9b}31m"), "c1 \\u{9b}31m");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        let mut document = serde_json::json!({ "k\u{1b}": ["x\ny", 1] });
        printable_json(&mut document);
        assert_eq!(document, serde_json::json!({ "k\\u{1b}": ["x\\ny", 1] }));
    }
}
