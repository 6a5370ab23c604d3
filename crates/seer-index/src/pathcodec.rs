//! File paths as the index stores and shows them.
//!
//! A Unix file name is any bytes, but the index keeps paths in SQLite `TEXT`
//! columns (and Parquet UTF-8 columns on export). The stored form is therefore a
//! reversible mapping of the path's bytes into a `String`:
//!
//! - valid UTF-8 is kept verbatim, so every index written before this codec
//!   existed reads unchanged;
//! - each byte of an invalid sequence becomes the private-use character
//!   `U+10FF00 + byte`;
//! - a real name that literally contains a character of that private range
//!   (`U+10FF00..=U+10FFFF`) has that character's bytes mapped the same way, so
//!   decoding is exact.
//!
//! Bytes map one by one and `/` is never part of a multi-byte sequence, so the
//! stored form of `root/rest` is the stored form of `root` followed by `/` and
//! the stored form of `rest`: root-prefix matching on stored strings works.
//!
//! For people the stored form is shown with [`display_stored`]: invalid bytes
//! as `\xNN`, control characters as `\n`, `\r`, `\t`, `\xNN` or `\u{NN}`, and
//! a backslash as `\\`, so a path always prints on one line and the printed
//! form can be read back with [`parse_display`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The private-use character standing for byte `b` is `BASE + b`.
const BASE: u32 = 0x10FF00;

fn is_escape_char(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&(c as u32))
}

fn byte_char(b: u8) -> char {
    char::from_u32(BASE + b as u32).expect("U+10FF00..=U+10FFFF are scalar values")
}

/// The stored form of a path's bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape_char(c) {
                let mut buf = [0; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(byte_char));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(byte_char));
    }
    out
}

/// The path bytes a stored string stands for (the inverse of [`encode`]).
pub fn decode(stored: &str) -> Cow<'_, [u8]> {
    if !stored.chars().any(is_escape_char) {
        return Cow::Borrowed(stored.as_bytes());
    }
    let mut out = Vec::with_capacity(stored.len());
    for c in stored.chars() {
        if is_escape_char(c) {
            out.push((c as u32 - BASE) as u8);
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// The stored form of a path.
pub fn to_stored(path: &Path) -> String {
    encode(path_bytes(path).as_ref())
}

/// The file system path a stored string names.
pub fn to_path(stored: &str) -> PathBuf {
    path_from_bytes(decode(stored).into_owned())
}

/// A path shown to people: one line, reversible with [`parse_display`].
pub fn display_path(path: &Path) -> String {
    display_bytes(path_bytes(path).as_ref())
}

/// The stored form of an indexed file's path as a user names it (`seer search
/// --like`, Python's `like`). Indexed paths are canonical, so relative ones are
/// resolved; a path as seer prints it (escaped) names the same file.
pub fn indexed_key(p: &Path) -> String {
    let unescaped = match p.exists() {
        true => None,
        false => p.to_str().and_then(path_from_display),
    };
    let p = unescaped.as_deref().unwrap_or(p);
    to_stored(&std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// A stored path shown to people (see [`display_path`]).
pub fn display_stored(stored: &str) -> String {
    display_bytes(&decode(stored))
}

/// A stored failure's cause on one line, without the file's name that
/// messages often start with (in the stored, shown or lossy form of the
/// stored path `stored`): what `seer status` and the server list beside the
/// path.
pub fn failure_cause(stored: &str, message: &str) -> String {
    let shown = display_stored(stored);
    let lossy = to_path(stored).display().to_string();
    let cause = [stored, shown.as_str(), lossy.as_str()]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .unwrap_or(message)
        .trim_start_matches(':')
        .trim();
    display_text(cause)
}

/// Any text shown on one line: control characters and backslashes escaped.
pub fn display_text(text: &str) -> String {
    display_bytes(text.as_bytes())
}

/// Bytes shown as text: valid UTF-8 verbatim except backslash and control
/// characters, which are escaped, and invalid bytes as `\xNN`.
pub fn display_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes a displayed path stands for, or None if `shown` is not in the
/// form [`display_bytes`] writes (an unknown or incomplete escape).
pub fn parse_display(shown: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(shown.len());
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => out.push(b'\\'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                if hex.len() != 2 {
                    return None;
                }
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The path a displayed path stands for (see [`parse_display`]).
pub fn path_from_display(shown: &str) -> Option<PathBuf> {
    parse_display(shown).map(path_from_bytes)
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    Cow::Borrowed(path.as_os_str().as_bytes())
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Cow<'_, [u8]> {
    // Elsewhere names are Unicode (or WTF-8, shown lossily): keep the text.
    match path.to_string_lossy() {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&[u8]] = &[
        b"/photos/a.jpg",
        b"/photos/caf\xe9.jpg",
        b"/p/\xff\xfe/\x80x\xc3",
        "/p/\u{10FF41}\u{10FFFF}-real-private-use.jpg".as_bytes(),
        b"/p/line\nbreak\tand\\backslash\x01\x7f.jpg",
        "/p/caf\u{e9} \u{85}.jpg".as_bytes(),
        b"",
    ];

    #[test]
    fn stored_form_round_trips_every_name() {
        for name in NAMES {
            let stored = encode(name);
            assert_eq!(decode(&stored).as_ref(), *name, "{stored:?}");
            assert_eq!(to_stored(&to_path(&stored)), stored);
        }
    }

    #[test]
    fn utf8_names_are_stored_verbatim() {
        for name in ["/photos/a.jpg", "/p/caf\u{e9}.jpg", "/p/line\nbreak"] {
            assert_eq!(encode(name.as_bytes()), name);
            assert!(matches!(decode(name), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn stored_form_keeps_root_prefixes() {
        let root: &[u8] = b"/ph\xe9otos";
        let file = [root, b"/caf\xe9.jpg"].concat();
        assert!(encode(&file).starts_with(&format!("{}/", encode(root))));
    }

    #[test]
    fn display_is_one_line_and_reversible() {
        for name in NAMES {
            let shown = display_bytes(name);
            assert!(!shown.contains(['\n', '\r', '\u{85}']), "{shown:?}");
            assert_eq!(parse_display(&shown).as_deref(), Some(*name), "{shown}");
        }
        assert_eq!(display_bytes(b"/p/caf\xe9.jpg"), "/p/caf\\xe9.jpg");
        assert_eq!(display_bytes(b"a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(display_stored(&encode(b"caf\xe9")), "caf\\xe9");
        assert_eq!(parse_display("bad\\q"), None);
        assert_eq!(parse_display("short\\x4"), None);
    }
}
