//! Text cleaning: the subset of `ftfy.fix_text` (ftfy 6.x defaults) that the
//! CLIP tokenizer relies on, then open_clip's own `basic_clean` /
//! `whitespace_clean` / lower-casing.
//!
//! Implemented ftfy fixers, in ftfy's order, repeated until nothing changes:
//! `unescape_html` ("auto": off for a line containing `<` and every line
//! after it), `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`,
//! `uncurl_quotes`, `fix_line_breaks`, `remove_terminal_escapes`,
//! `remove_control_chars`, then NFC.
//!
//! Not implemented: `fix_encoding` (mojibake repair such as `Ã©` -> `é`,
//! a large heuristic with its own codecs). `fix_surrogates` has nothing to do
//! on a Rust `&str`, which cannot hold surrogates.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::html;

/// ftfy's `max_decode_length`: longest segment fixed in one go.
const MAX_SEGMENT_CHARS: usize = 1_000_000;
/// ftfy repeats its fixers until the text stops changing. Nested escapes
/// (`&amp;amp;amp;...`) peel one level per round, so an adversarial input
/// could take O(n²); stop after this much work per segment (chars processed,
/// summed over rounds). Realistic text needs two or three rounds.
const FIX_WORK_BUDGET: usize = 64 * 1024 * 1024;

/// open_clip's full cleaning: ftfy, `html.unescape` twice, whitespace
/// collapsed the way Python's `str.split()` sees whitespace, lower-cased.
#[cfg(test)]
pub(crate) fn clean(text: &str) -> String {
    LineCleaner::new().clean(text)
}

/// [`clean`] of a text given a few whole lines at a time, so the tokenizer
/// can stop once it has enough tokens. The words of the whole text are those
/// of its parts, one after another: every step works within a line (ftfy
/// fixes line by line; only its HTML switch, kept here, carries over), or
/// cannot reach across the line break, which each part but the last ends
/// with and which no step removes (no character reference contains or
/// swallows it, and it is whitespace, which ends words and the context of a
/// final sigma).
pub(crate) struct LineCleaner {
    unescape: bool,
}

impl LineCleaner {
    pub(crate) fn new() -> Self {
        Self { unescape: true }
    }

    /// The cleaned words of `lines`: whole lines (each ending with `\n`, but
    /// for the text's last), following those given before.
    pub(crate) fn clean(&mut self, lines: &str) -> String {
        finish(&fix_text_lines(lines, &mut self.unescape))
    }
}

/// What follows ftfy: `html.unescape` twice, whitespace, lower case.
fn finish(fixed: &str) -> String {
    let once = html::unescape(fixed);
    let twice = html::unescape(&once);
    let mut out = String::with_capacity(twice.len());
    for word in twice.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    // Rust's `to_lowercase` and Python's `str.lower` both apply the full
    // Unicode mapping, final sigma included.
    out.to_lowercase()
}

/// Python's `str.isspace`: Unicode bidi class WS, B or S, or category Zs.
/// Differs from `char::is_whitespace` by including U+001C..U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `ftfy.fix_text` without `fix_encoding`. Like ftfy, works line by line
/// (each segment keeps its `\n`), and once a line contains `<` the text is
/// taken to be HTML and entities are left alone from there on.
#[cfg(test)]
pub(crate) fn fix_text(text: &str) -> String {
    fix_text_lines(text, &mut true)
}

/// [`fix_text`] of whole lines, `unescape` saying whether an earlier line
/// turned HTML unescaping off (and updated for the lines after these).
fn fix_text_lines(text: &str, unescape: &mut bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        // ftfy also cuts segments at `max_decode_length` code points.
        let end = rest[..line_end]
            .char_indices()
            .nth(MAX_SEGMENT_CHARS)
            .map_or(line_end, |(i, _)| i);
        let (segment, tail) = rest.split_at(end);
        if segment.contains('<') {
            *unescape = false;
        }
        out.push_str(&fix_segment(segment, *unescape));
        rest = tail;
    }
    out
}

fn fix_segment(segment: &str, unescape: bool) -> Cow<'_, str> {
    // Printable ASCII (plus tab/newline) without `&` is left alone by every
    // fixer; most prompts take this path.
    if segment
        .bytes()
        .all(|b| matches!(b, b' '..=b'~' | b'\t' | b'\n') && b != b'&')
    {
        return Cow::Borrowed(segment);
    }
    let mut text = segment.to_string();
    let mut work = 0usize;
    loop {
        let before = text.clone();
        if unescape {
            text = html::ftfy_unescape(&text).into_owned();
        }
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text).into_owned();
        text = remove_control_chars(&text);
        text = nfc(&text);
        work += before.len();
        if text == before || work > FIX_WORK_BUDGET {
            return Cow::Owned(text);
        }
    }
}

/// Maps every char through `f` (which appends its replacement).
fn map_chars(text: &str, mut f: impl FnMut(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        f(c, &mut out);
    }
    out
}

/// C1 controls (U+0080..U+009F) are nearly always Windows-1252 bytes that
/// were decoded as Latin-1; read them as Windows-1252, like browsers do.
pub(crate) fn fix_c1_controls(text: &str) -> String {
    map_chars(text, |c, out| match c {
        '\u{80}'..='\u{9f}' => out.push(html::windows_1252(c as u8)),
        _ => out.push(c),
    })
}

/// Latin ligatures and legacy digraphs (`ﬁ`, `ĳ`, `ǆ`, ...) become their
/// letters. Ligatures in other scripts, and `æ`/`œ`, are left alone.
pub(crate) fn fix_latin_ligatures(text: &str) -> String {
    map_chars(text, |c, out| {
        let s = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => return out.push(c),
        };
        out.push_str(s);
    })
}

/// Fullwidth ASCII and halfwidth Katakana/Hangul forms (U+FF01..U+FFEF)
/// become their standard forms (their NFKC), and U+3000 IDEOGRAPHIC SPACE a
/// plain space.
pub(crate) fn fix_character_width(text: &str) -> String {
    map_chars(text, |c, out| match c {
        '\u{3000}' => out.push(' '),
        '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
        _ => out.push(c),
    })
}

/// Curly quotes (and U+02BC MODIFIER LETTER APOSTROPHE) become straight ones.
pub(crate) fn uncurl_quotes(text: &str) -> String {
    map_chars(text, |c, out| match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
        '\u{201c}'..='\u{201f}' => out.push('"'),
        _ => out.push(c),
    })
}

/// CRLF, CR, U+2028, U+2029 and U+0085 become `\n`.
pub(crate) fn fix_line_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ => out.push(c),
        }
    }
    out
}

/// ANSI terminal escapes such as `ESC[1;31m`. `\d` is any Unicode decimal
/// digit here, as in Python's `re`.
pub(crate) fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    ANSI.get_or_init(|| Regex::new(r"\x1b\[[\d;]*[a-zA-Z]").expect("valid regex"))
        .replace_all(text, "")
}

/// Control characters with no visible effect: C0 controls other than
/// tab/LF/FF/CR, DEL, deprecated Arabic format controls, interlinear
/// annotation marks, U+FFFC and the BOM. Joiners, bidi controls, C1
/// controls and emoji tag characters are kept.
pub(crate) fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(
                c,
                '\0'..='\x08'
                    | '\x0b'
                    | '\x0e'..='\x1f'
                    | '\x7f'
                    | '\u{206a}'..='\u{206f}'
                    | '\u{feff}'
                    | '\u{fff9}'..='\u{fffc}'
            )
        })
        .collect()
}

/// Unicode NFC.
pub(crate) fn nfc(text: &str) -> String {
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return text.to_string();
    }
    text.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftfy_docstring_examples() {
        assert_eq!(
            fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
            "Broken text… it's flubberific!"
        );
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("Ｕﾀｰﾝ"), "Uターン");
        assert_eq!(fix_text("ﬂuﬃeﬆ"), "fluffiest");
    }

    #[test]
    fn uncurl() {
        assert_eq!(
            uncurl_quotes("\u{201c}here\u{2019}s a test\u{201d} \u{2bc}\u{201b}\u{201f}"),
            "\"here's a test\" ''\""
        );
    }

    #[test]
    fn ligatures() {
        assert_eq!(
            fix_latin_ligatures("ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ Ĳ ĳ ǆ Ǆ ǅ ŉ æ œ"),
            "ff fi fl ffi ffl ſt st IJ ij dž DŽ Dž ʼn æ œ"
        );
    }

    #[test]
    fn width() {
        assert_eq!(fix_character_width("ＡＢＣ１２３！？＆"), "ABC123!?&");
        assert_eq!(fix_character_width("ｶﾞ\u{3000}￥￦"), "カ\u{3099} ¥₩");
        // NFC (a later step) joins the halfwidth voiced mark.
        assert_eq!(fix_text("ｶﾞ"), "ガ");
    }

    #[test]
    fn line_breaks() {
        assert_eq!(
            fix_line_breaks("a\r\nb\rc\u{2028}d\u{2029}e\u{85}f\r\r\n"),
            "a\nb\nc\nd\ne\nf\n\n"
        );
        // In fix_text, C1 repair runs first: U+0085 is an ellipsis by then.
        assert_eq!(fix_text("x\u{85}y"), "x…y");
    }

    #[test]
    fn control_chars() {
        assert_eq!(
            remove_control_chars(
                "a\0\x08\tb\n\x0b\x0c\r\x0e\x1fc\x7f\u{80}\u{200d}\u{feff}\u{fffc}\u{fffd}"
            ),
            "a\tb\n\x0c\rc\u{80}\u{200d}\u{fffd}"
        );
    }

    #[test]
    fn terminal_escapes() {
        assert_eq!(
            remove_terminal_escapes("\x1b[36;44mI'm blue\x1b[0m \x1b[\u{663}m!\x1b[x \x1b[!"),
            "I'm blue ! \x1b[!"
        );
        assert_eq!(fix_text("\x1b[31mred\x1b[0m"), "red");
    }

    #[test]
    fn c1_controls() {
        assert_eq!(
            fix_c1_controls("\u{80}\u{81}\u{93}\u{94}\u{9f}"),
            "€\u{81}“”Ÿ"
        );
        // ...and the resulting curly quotes are then uncurled.
        assert_eq!(fix_text("\u{93}hi\u{94}"), "\"hi\"");
    }

    #[test]
    fn normalization() {
        assert_eq!(nfc("e\u{301}"), "é");
        assert_eq!(nfc("\u{212b}\u{2126}"), "\u{c5}\u{3a9}");
        // Greek question mark becomes `;`, which can complete an entity in
        // the next round.
        assert_eq!(fix_text("&amp\u{37e}"), "&");
    }

    #[test]
    fn html_auto_mode() {
        assert_eq!(fix_text("&amp;amp; &lt;b&gt;"), "& <b>");
        assert_eq!(fix_text("a < b &amp; c"), "a < b &amp; c");
        assert_eq!(
            fix_text("x &amp; y\n<p> &amp;\nz &amp;"),
            "x & y\n<p> &amp;\nz &amp;"
        );
    }

    #[test]
    fn python_whitespace() {
        assert!(is_python_space('\x1c') && !'\x1c'.is_whitespace());
        assert!(!is_python_space('\u{200b}'));
        assert_eq!(clean("  A\u{a0}\u{3000}B\t\nC  "), "a b c");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" \t\n"), "");
    }

    #[test]
    fn clean_lowercases_after_unescaping() {
        assert_eq!(clean("ΟΔΟΣ &Sigma;"), "οδος σ");
        assert_eq!(clean("&amp;lt;B&amp;gt;"), "<b>");
        assert_eq!(clean("İ"), "i\u{307}");
    }

    #[test]
    fn deep_nesting_terminates() {
        let s = "&amp".repeat(200) + ";" + &"amp;".repeat(200);
        let _ = fix_text(&s);
        let s = "&amp;".to_string() + &"amp;".repeat(300_000);
        let _ = clean(&s);
    }
}
