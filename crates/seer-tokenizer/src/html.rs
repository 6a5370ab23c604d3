//! HTML character references, decoded the way the reference decodes them.
//!
//! Two decoders are needed and they differ on purpose:
//! * [`unescape`] is Python's `html.unescape` (HTML5 rules: legacy names
//!   without `;`, longest-prefix matching, Windows-1252 fix-ups for numeric
//!   references). The tokenizer applies it twice after ftfy.
//! * [`ftfy_unescape`] is ftfy's cautious `unescape_html`: only complete
//!   `&name;` / `&#num;` references, plus upper-cased names like `&EACUTE;`.

use std::borrow::Cow;

use crate::entities::{FTFY_UPPER, HTML5};

fn lookup(table: &'static [(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(k, _)| k.as_bytes().cmp(name.as_bytes()))
        .ok()
        .map(|i| table[i].1)
}

/// Python's `html._invalid_charrefs`: numeric references the HTML5 spec
/// remaps (NUL, CR, and the Windows-1252 range).
fn invalid_charref(num: u32) -> Option<char> {
    let c = match num {
        0x00 => '\u{fffd}',
        0x0d => '\r',
        0x80..=0x9f => windows_1252(num as u8),
        _ => return None,
    };
    Some(c)
}

/// Windows-1252 meaning of byte 0x80..=0x9F, keeping the five bytes it
/// leaves undefined as the same-numbered C1 control ("sloppy" Windows-1252,
/// which is what both `html` and ftfy's `fix_c1_controls` use).
pub(crate) fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match b {
        0x80..=0x9f => HIGH[(b - 0x80) as usize],
        _ => char::from(b),
    }
}

/// Python's `html._invalid_codepoints`: references to these decode to nothing.
fn invalid_codepoint(num: u32) -> bool {
    matches!(num, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
        || (num & 0xfffe == 0xfffe && num <= 0x10ffff)
}

/// Decodes a numeric reference's digits the way `_replace_charref` does.
/// Values past U+10FFFF saturate (they all become U+FFFD anyway).
fn numeric_charref(digits: &str, radix: u32, out: &mut String) {
    let num = digits.chars().fold(0u32, |acc, d| {
        acc.saturating_mul(radix)
            .saturating_add(d.to_digit(radix).unwrap_or(0))
    });
    if let Some(c) = invalid_charref(num) {
        out.push(c);
    } else if (0xd800..=0xdfff).contains(&num) || num > 0x10ffff {
        out.push('\u{fffd}');
    } else if invalid_codepoint(num) {
        // dropped
    } else if let Some(c) = char::from_u32(num) {
        out.push(c);
    }
}

/// Length in bytes of the longest run at the start of `s` (at most `max`
/// chars) whose chars satisfy `pred`.
fn run_len(s: &str, max: usize, pred: impl Fn(char) -> bool) -> usize {
    let mut end = 0;
    for (i, c) in s.char_indices().take(max) {
        if !pred(c) {
            break;
        }
        end = i + c.len_utf8();
    }
    end
}

/// Python's `html.unescape`.
pub(crate) fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match charref(after, &mut out) {
            Some(used) => rest = &after[used..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Matches `_charref` (`#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?`)
/// at the start of `s` (just after a `&`), appends the replacement and returns
/// the bytes consumed, or `None` if nothing matches.
fn charref(s: &str, out: &mut String) -> Option<usize> {
    let semicolon = |end: usize| end + usize::from(s[end..].starts_with(';'));
    if let Some(num) = s.strip_prefix('#') {
        let dec = run_len(num, usize::MAX, |c| c.is_ascii_digit());
        if dec > 0 {
            numeric_charref(&num[..dec], 10, out);
            return Some(semicolon(1 + dec));
        }
        let hex = num.strip_prefix(['x', 'X'])?;
        let len = run_len(hex, usize::MAX, |c| c.is_ascii_hexdigit());
        if len == 0 {
            return None;
        }
        numeric_charref(&hex[..len], 16, out);
        return Some(semicolon(2 + len));
    }
    let len = run_len(s, 32, |c| {
        !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';')
    });
    if len == 0 {
        return None;
    }
    let end = semicolon(len);
    let name = &s[..end];
    if let Some(v) = lookup(HTML5, name) {
        out.push_str(v);
        return Some(end);
    }
    // Longest proper prefix of at least two chars that is an entity (only
    // the legacy names without `;` can match, as `;` can only end `name`).
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(v) = lookup(HTML5, &name[..cut]) {
            out.push_str(v);
            out.push_str(&name[cut..]);
            return Some(end);
        }
    }
    out.push('&');
    out.push_str(name);
    Some(end)
}

/// ftfy's `unescape_html`: replaces `&#?[0-9A-Za-z]{1,24};` when it names an
/// HTML5 entity (or an upper-cased one, as in `P&EACUTE;REZ`), or is a
/// numeric reference that `html.unescape` decodes completely.
pub(crate) fn ftfy_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let hash = usize::from(after.starts_with('#'));
        let body = run_len(&after[hash..], 25, |c| c.is_ascii_alphanumeric());
        let end = hash + body;
        if (1..=24).contains(&body) && after[end..].starts_with(';') {
            let entity = &rest[amp..amp + 1 + end + 1]; // "&...;"
            let name = &entity[1..];
            if let Some(v) = lookup(HTML5, name).or_else(|| lookup(FTFY_UPPER, name)) {
                out.push_str(v);
            } else if hash == 1 {
                // Keep it unless html.unescape consumed the whole thing,
                // `;` included (e.g. `&#65abc;` stays as it is).
                let decoded = unescape(entity);
                out.push_str(if decoded.contains(';') {
                    entity
                } else {
                    &decoded
                });
            } else {
                out.push_str(entity);
            }
            rest = &after[end + 1..];
        } else {
            out.push('&');
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        for t in [HTML5, FTFY_UPPER] {
            assert!(t.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        }
        assert_eq!(HTML5.len(), 2231);
    }

    #[test]
    fn python_unescape() {
        let cases = [
            ("no entities", "no entities"),
            (
                "&amp; &lt; &gt; &quot; &#39; &#x27; &apos;",
                "& < > \" ' ' '",
            ),
            ("&amp;amp;", "&amp;"),
            ("&ampfoo &copy2024 &notit; &notin;", "&foo ©2024 ¬it; ∉"),
            ("&eacute &eacute; &Eacute;", "é é É"),
            (
                "&EACUTE; &bogus; & &; &#; &#x;",
                "&EACUTE; &bogus; & &; &#; &#x;",
            ),
            ("&#65&#x42;&#X43;", "ABC"),
            ("&#0; &#13; &#128; &#x9F;", "\u{fffd} \r € Ÿ"),
            ("&#1;&#11;&#x7f;&#xFDD0;&#xFFFE;&#x10FFFF;", ""),
            (
                "&#55296; &#x110000; &#99999999999999999999;",
                "\u{fffd} \u{fffd} \u{fffd}",
            ),
            ("&#x1F600;", "\u{1f600}"),
            ("&NotNestedGreaterGreater;", "\u{2aa2}\u{338}"),
            ("&Ã©", "&Ã©"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape(input), want, "{input:?}");
        }
    }

    #[test]
    fn ftfy_unescape_is_cautious() {
        let cases = [
            ("&lt;tag&gt;", "<tag>"),
            ("&Jscr;ohn &HilbertSpace;ancock", "𝒥ohn ℋancock"),
            ("&checkmark;", "✓"),
            ("P&EACUTE;REZ", "PÉREZ"),
            ("BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"),
            ("&ntilde; &Ntilde; &NTILDE; &nTILDE;", "ñ Ñ Ñ &nTILDE;"),
            ("fish &amp chips &not that", "fish &amp chips &not that"),
            ("&amp;amp;", "&amp;"),
            ("&#39; &#x27; &#65abc; &#1; &#0;", "' ' &#65abc;  \u{fffd}"),
            ("&aaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaa;"),
        ];
        for (input, want) in cases {
            assert_eq!(ftfy_unescape(input), want, "{input:?}");
        }
    }
}
