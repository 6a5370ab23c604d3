//! Caption metrics as the COCO caption evaluation computes them
//! (`pycocoevalcap` 1.2): corpus BLEU-1..4 and CIDEr-D, so that a captioning
//! model run through seer can be compared with the numbers papers report.
//!
//! Both scorers follow pycocoevalcap operation for operation, and agree with
//! it to the last bit or within an ulp: BLEU is `Bleu(4).compute_score`
//! (`bleu_scorer.py`, option "closest": the reference length nearest the
//! candidate's, the shorter on a tie; its 1e-9 / 1e-15 guards; the brevity
//! penalty on the corpus length ratio); CIDEr is `Cider().compute_score`
//! (`cider_scorer.py`, which is CIDEr-D: tf-idf n-grams 1..4, document
//! frequency over the reference sets of the images being scored, idf against
//! log(number of images), clipped candidate weights, the Gaussian length
//! penalty with sigma 6 counted, as there, in *bigrams*, times 10, and numpy's
//! pairwise summation for the corpus mean). CIDEr-D of a set depends on the
//! whole set, not on each image alone.
//!
//! Tokenisation: pycocoevalcap runs Stanford CoreNLP 3.4.1's `PTBTokenizer
//! -preserveLines -lowerCase` (Java) over the captions, then drops the tokens in
//! its `PUNCTUATIONS` list. [`tokenize`] re-implements that lexer's rules
//! (PTBLexer.flex of 3.4.1, longest match, ties to the earlier rule): words,
//! numbers, hyphenated and slashed compounds, clitics (`do n't`, `dog 's`,
//! `ca n't`, `gon na`, `can not`), the abbreviations it keeps with their period
//! (`st.`, `mr.`, `u.s.`; a sentence-final `etc.` gives `etc.` and `.`), quotes
//! (`"` becomes `` or '', dropped), brackets (`(` becomes `-lrb-`, which stays:
//! the list holds `-LRB-` and is applied after lowercasing), dashes, ellipses,
//! `?!` runs (kept: only a single `?` or `!` is dropped), URLs, e-mail
//! addresses, tags, fractions and currencies (`½` → `1/2`, `£` → `#`), and
//! characters it cannot tokenise (deleted, as emoji are). It agrees token for
//! token with the Java tokeniser on every coco-mini caption and on the tricky
//! ones in `fixtures/caption_metrics`, made by running it.
//!
//! Limits: each caption is lexed alone, followed by a line break, while
//! pycocoevalcap lexes all captions of a set as one text. That changes the
//! tokens only where a rule looks past the line break: a caption ending in a
//! single letter and a period ("plan B.") gives `b.` here and `b` there when the
//! next caption starts with "A", "The", "He" or some forty other words; one
//! ending in "no." or "fig." keeps the period there when the next starts with a
//! digit; and the set's last caption, with nothing after it there, differs if
//! it ends in a smiley. Not implemented: phone numbers, Asian-style smileys,
//! character entities other than `&amp;`, `&apos;`, `&quot;`, `&lt;`, `&gt;`,
//! `&nbsp;` and the dashes. A line break other than `\n` inside a caption is a
//! space here; pycocoevalcap would misalign every caption after it. Letters
//! and digits outside ASCII follow Rust's Unicode tables rather than those of
//! the JDK that generated the lexer.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::describe::CaptionOptions;
use crate::error::{EngineError, Result};
use crate::retrieval::CaptionedImage;
use crate::tasks::Captioner;

/// The tokens pycocoevalcap's `PTBTokenizer` drops after tokenising (its
/// `PUNCTUATIONS`). The bracket names never match: they are compared after
/// lowercasing.
pub const PUNCTUATIONS: &[&str] = &[
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// CIDEr-D's Gaussian length penalty, as in pycocoevalcap.
pub const CIDER_SIGMA: f64 = 6.0;
/// N-gram orders both metrics use.
pub const MAX_N: usize = 4;

/// One image: the caption to score and its human references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionExample {
    pub candidate: String,
    pub references: Vec<String>,
}

/// The scores of one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageScore {
    /// BLEU-1..4 of this caption alone (pycocoevalcap's per-image list).
    pub bleu: [f64; MAX_N],
    /// CIDEr-D, with the document frequencies of the whole set.
    pub cider: f64,
}

/// Corpus scores over a set of images, on pycocoevalcap's scale: BLEU in
/// [0, 1], CIDEr-D from 0 to 10 (papers print both times 100).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CaptionReport {
    pub images: usize,
    pub bleu4: f64,
    /// BLEU-1, -2, -3, -4.
    pub bleu: [f64; MAX_N],
    pub cider: f64,
    /// One entry per image, in input order; empty when not asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_image: Vec<ImageScore>,
}

/// Scores raw captions: each candidate and reference goes through
/// [`tokenize`] first, as pycocoevalcap's evaluation does.
pub fn score_captions(examples: &[CaptionExample], per_image: bool) -> Result<CaptionReport> {
    let tokenized: Vec<CaptionExample> = examples
        .iter()
        .map(|e| CaptionExample {
            candidate: tokenize_caption(&e.candidate),
            references: e.references.iter().map(|r| tokenize_caption(r)).collect(),
        })
        .collect();
    score_tokenized(&tokenized, per_image)
}

/// Scores captions already tokenised: words separated by whitespace, as
/// pycocoevalcap's `Bleu` and `Cider` classes take them (no lowercasing or
/// punctuation removal happens here).
pub fn score_tokenized(examples: &[CaptionExample], per_image: bool) -> Result<CaptionReport> {
    check(examples)?;
    let (bleu, bleu_per_image) = bleu(examples)?;
    let (cider, cider_per_image) = cider_d(examples)?;
    Ok(CaptionReport {
        images: examples.len(),
        bleu4: bleu[MAX_N - 1],
        bleu,
        cider,
        per_image: if per_image {
            bleu_per_image
                .into_iter()
                .zip(cider_per_image)
                .map(|(bleu, cider)| ImageScore { bleu, cider })
                .collect()
        } else {
            Vec::new()
        },
    })
}

fn check(examples: &[CaptionExample]) -> Result<()> {
    if examples.is_empty() {
        return Err(EngineError::Invalid("no captions to score".into()));
    }
    if let Some(i) = examples.iter().position(|e| e.references.is_empty()) {
        return Err(EngineError::Invalid(format!(
            "image {} of {} has no reference captions",
            i + 1,
            examples.len()
        )));
    }
    Ok(())
}

/// `seer eval caption`'s report: the scores of a model's captions over the
/// images it could read, those it could not, and each image's caption.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaptionEvaluation {
    /// Images captioned and scored.
    pub images: usize,
    pub bleu4: f64,
    /// BLEU-1, -2, -3, -4.
    pub bleu: [f64; MAX_N],
    pub cider: f64,
    /// Images left out: unreadable, or the model failed on their batch.
    pub failed: Vec<FailedImage>,
    pub per_image: Vec<ImageCaption>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FailedImage {
    pub file: String,
    pub error: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageCaption {
    pub file: String,
    pub caption: String,
    pub bleu4: f64,
    pub cider: f64,
}

/// Captions every image with `captioner` (in batches of
/// `options.batch_size`) and scores the captions against the images'
/// references. A prompt (`options.prompt`) is cut from the front of each
/// caption before scoring, as BLIP's own COCO evaluation does. Images that
/// fail are reported through `on_result` as they happen and left out of the
/// scores; only a set where none could be captioned is an error. `on_result`
/// sees each image once, in input order, with the model's whole text.
pub fn evaluate_captioning(
    captioner: &dyn Captioner,
    items: &[CaptionedImage],
    options: &CaptionOptions,
    mut on_result: impl FnMut(&Path, std::result::Result<&str, &EngineError>),
) -> Result<CaptionEvaluation> {
    let paths: Vec<std::path::PathBuf> = items.iter().map(|i| i.image.clone()).collect();
    let mut scored: Vec<(usize, String)> = Vec::new();
    let mut failed = Vec::new();
    captioner.caption_files(&paths, options, |outcome| match outcome.result {
        Ok(generated) => {
            on_result(&outcome.path, Ok(&generated.text));
            let caption = match &options.prompt {
                Some(prompt) => strip_prompt(&generated.text, prompt),
                None => &generated.text,
            };
            scored.push((outcome.index, caption.to_string()));
        }
        Err(e) => {
            on_result(&outcome.path, Err(&e));
            let file = outcome.path.display().to_string();
            let message = e.to_string();
            let error = message
                .strip_prefix(file.as_str())
                .and_then(|m| m.strip_prefix(": "))
                .unwrap_or(&message)
                .to_string();
            failed.push(FailedImage { file, error });
        }
    });
    if scored.is_empty() {
        return Err(EngineError::Invalid(match failed.first() {
            Some(f) => format!(
                "none of the {} images could be captioned (first: {}: {})",
                items.len(),
                f.file,
                f.error
            ),
            None => "no images to caption".into(),
        }));
    }
    let examples: Vec<CaptionExample> = scored
        .iter()
        .map(|(i, caption)| CaptionExample {
            candidate: caption.clone(),
            references: items[*i].captions.clone(),
        })
        .collect();
    let report = score_captions(&examples, true)?;
    let per_image = scored
        .into_iter()
        .zip(&report.per_image)
        .map(|((i, caption), s)| ImageCaption {
            file: items[i].image.display().to_string(),
            caption,
            bleu4: s.bleu[MAX_N - 1],
            cider: s.cider,
        })
        .collect();
    Ok(CaptionEvaluation {
        images: report.images,
        bleu4: report.bleu4,
        bleu: report.bleu,
        cider: report.cider,
        failed,
        per_image,
    })
}

/// `text` without the `prompt` it starts with, compared ignoring case and
/// whitespace (a WordPiece decoder lowercases and respaces the prompt). Text
/// that does not start with the prompt is returned whole.
pub fn strip_prompt<'a>(text: &'a str, prompt: &str) -> &'a str {
    let mut want = prompt.chars().filter(|c| !c.is_whitespace());
    let mut next = want.next();
    for (at, c) in text.char_indices() {
        let Some(w) = next else {
            return text[at..].trim_start();
        };
        if c.is_whitespace() {
            continue;
        }
        if !c.to_lowercase().eq(w.to_lowercase()) {
            return text;
        }
        next = want.next();
    }
    if next.is_none() {
        ""
    } else {
        text
    }
}

/// Splits as Python's `str.split()` does: on runs of Unicode whitespace, which
/// for Python also includes U+001C..U+001F.
pub fn python_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
}

/// N-gram counts of one sentence in pycocoevalcap's order (all unigrams in
/// order of first appearance, then bigrams, ...), which fixes the order of its
/// floating-point sums. An n-gram is its words joined by one space (words
/// hold no whitespace), its order `n - 1` kept beside it.
struct Counts {
    grams: Vec<(String, usize, u32)>,
    index: HashMap<String, usize>,
    words: usize,
}

impl Counts {
    fn new(sentence: &str) -> Self {
        let words: Vec<&str> = python_split(sentence).collect();
        let mut counts = Counts {
            grams: Vec::new(),
            index: HashMap::new(),
            words: words.len(),
        };
        for k in 1..=MAX_N {
            for window in words.windows(k) {
                let gram = window.join(" ");
                match counts.index.get(&gram) {
                    Some(&at) => counts.grams[at].2 += 1,
                    None => {
                        counts.index.insert(gram.clone(), counts.grams.len());
                        counts.grams.push((gram, k - 1, 1));
                    }
                }
            }
        }
        counts
    }
}

/// Corpus BLEU-1..4 and each image's, exactly as `Bleu(4).compute_score`.
pub fn bleu(examples: &[CaptionExample]) -> Result<([f64; MAX_N], Vec<[f64; MAX_N]>)> {
    check(examples)?;
    const SMALL: f64 = 1e-9;
    const TINY: f64 = 1e-15;
    let (mut test_total, mut ref_total) = (0usize, 0usize);
    let mut guess_total = [0usize; MAX_N];
    let mut correct_total = [0usize; MAX_N];
    let mut per_image = Vec::with_capacity(examples.len());
    for e in examples {
        // cook_refs: each reference's length and the largest count of each n-gram.
        let mut ref_lens = Vec::with_capacity(e.references.len());
        let mut max_counts: HashMap<String, u32> = HashMap::new();
        for r in &e.references {
            let c = Counts::new(r);
            ref_lens.push(c.words);
            for (gram, _, n) in c.grams {
                let m = max_counts.entry(gram).or_insert(0);
                *m = (*m).max(n);
            }
        }
        // cook_test
        let test = Counts::new(&e.candidate);
        let test_len = test.words;
        let ref_len = ref_lens
            .iter()
            .map(|&l| (l.abs_diff(test_len), l))
            .min()
            .expect("references checked")
            .1;
        let guess: [usize; MAX_N] = std::array::from_fn(|k| (test_len + 1).saturating_sub(k + 1));
        let mut correct = [0usize; MAX_N];
        for (gram, k, n) in &test.grams {
            correct[*k] += (*n).min(max_counts.get(gram).copied().unwrap_or(0)) as usize;
        }
        // This image's scores, as compute_score's bleu_list.
        let mut scores = [0f64; MAX_N];
        let mut b = 1f64;
        for k in 0..MAX_N {
            b *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
            scores[k] = b.powf(1.0 / (k + 1) as f64);
        }
        let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
        if ratio < 1.0 {
            let penalty = (1.0 - 1.0 / ratio).exp();
            scores.iter_mut().for_each(|s| *s *= penalty);
        }
        per_image.push(scores);
        test_total += test_len;
        ref_total += ref_len;
        for k in 0..MAX_N {
            guess_total[k] += guess[k];
            correct_total[k] += correct[k];
        }
    }
    let mut corpus = [0f64; MAX_N];
    let mut b = 1f64;
    for k in 0..MAX_N {
        b *= (correct_total[k] as f64 + TINY) / (guess_total[k] as f64 + SMALL);
        corpus[k] = b.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (test_total as f64 + TINY) / (ref_total as f64 + SMALL);
    if ratio < 1.0 {
        let penalty = (1.0 - 1.0 / ratio).exp();
        corpus.iter_mut().for_each(|s| *s *= penalty);
    }
    Ok((corpus, per_image))
}

/// One sentence as CIDEr's tf-idf vectors: per n-gram order, the weights in
/// insertion order and their norm; and its "length", which pycocoevalcap
/// counts as the number of bigrams.
struct TfIdf {
    weights: [Vec<(String, f64)>; MAX_N],
    lookup: [HashMap<String, f64>; MAX_N],
    norm: [f64; MAX_N],
    length: i64,
}

impl TfIdf {
    fn new(counts: &Counts, df: &HashMap<&str, f64>, log_images: f64) -> Self {
        let mut weights: [Vec<(String, f64)>; MAX_N] = Default::default();
        let mut norm = [0f64; MAX_N];
        let mut length = 0i64;
        for (gram, n, tf) in &counts.grams {
            let d = df.get(gram.as_str()).copied().unwrap_or(0.0).max(1.0).ln();
            let w = *tf as f64 * (log_images - d);
            weights[*n].push((gram.clone(), w));
            norm[*n] += w.powf(2.0);
            if *n == 1 {
                length += i64::from(*tf);
            }
        }
        let lookup = std::array::from_fn(|n| weights[n].iter().cloned().collect());
        Self {
            weights,
            lookup,
            norm: norm.map(f64::sqrt),
            length,
        }
    }

    /// pycocoevalcap's `sim`: clipped cosine per order, times the length penalty.
    fn sim(&self, reference: &TfIdf) -> [f64; MAX_N] {
        let delta = (self.length - reference.length) as f64;
        let penalty = std::f64::consts::E.powf(-delta.powf(2.0) / (2.0 * CIDER_SIGMA.powf(2.0)));
        std::array::from_fn(|n| {
            let mut val = 0f64;
            for (gram, w) in &self.weights[n] {
                let r = reference.lookup[n].get(gram).copied().unwrap_or(0.0);
                val += w.min(r) * r;
            }
            if self.norm[n] != 0.0 && reference.norm[n] != 0.0 {
                val /= self.norm[n] * reference.norm[n];
            }
            val * penalty
        })
    }
}

/// Corpus CIDEr-D and each image's, exactly as `Cider().compute_score`.
pub fn cider_d(examples: &[CaptionExample]) -> Result<(f64, Vec<f64>)> {
    check(examples)?;
    let refs: Vec<Vec<Counts>> = examples
        .iter()
        .map(|e| e.references.iter().map(|r| Counts::new(r)).collect())
        .collect();
    // Document frequency: in how many images' reference sets each n-gram occurs.
    let mut df: HashMap<&str, f64> = HashMap::new();
    for image in &refs {
        let grams: HashSet<&str> = image
            .iter()
            .flat_map(|c| c.grams.iter().map(|(g, _, _)| g.as_str()))
            .collect();
        for g in grams {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let log_images = (examples.len() as f64).ln();
    let scores: Vec<f64> = examples
        .iter()
        .zip(&refs)
        .map(|(e, image_refs)| {
            let test = TfIdf::new(&Counts::new(&e.candidate), &df, log_images);
            let mut score = [0f64; MAX_N];
            for r in image_refs {
                let sim = test.sim(&TfIdf::new(r, &df, log_images));
                for n in 0..MAX_N {
                    score[n] += sim[n];
                }
            }
            let mut avg = numpy_mean(&score);
            avg /= image_refs.len() as f64;
            avg * 10.0
        })
        .collect();
    Ok((numpy_mean(&scores), scores))
}

/// `np.mean` of a float64 vector, bit for bit: numpy's pairwise summation
/// (blocks of 8 below 128 values, halves above), then one division.
fn numpy_mean(values: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(0.0, |s, x| s + x)
        } else if n <= 128 {
            let mut r: [f64; 8] = std::array::from_fn(|j| a[j]);
            let whole = n - n % 8;
            for block in a[8..whole].chunks_exact(8) {
                for j in 0..8 {
                    r[j] += block[j];
                }
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for x in &a[whole..] {
                res += x;
            }
            res
        } else {
            let mut half = n / 2;
            half -= half % 8;
            pairwise(&a[..half]) + pairwise(&a[half..])
        }
    }
    pairwise(values) / values.len() as f64
}

// ---------------------------------------------------------------------------
// Tokenisation: PTBTokenizer 3.4.1 as pycocoevalcap runs it.

/// A caption as pycocoevalcap scores it: PTB tokens, lowercased, with the
/// [`PUNCTUATIONS`] tokens removed, joined by single spaces.
pub fn tokenize_caption(caption: &str) -> String {
    tokenize(caption).join(" ")
}

/// A caption's tokens as pycocoevalcap scores them (see the module doc). A
/// token may hold a no-break space (PTB's spelling of `1 1/2`); the scorers
/// split there, as Python's `split()` does.
pub fn tokenize(caption: &str) -> Vec<String> {
    ptb_tokens(caption)
        .into_iter()
        .map(|t| java_lowercase(&t))
        .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
        .collect()
}

/// Java's `String.toLowerCase`: Unicode lowercasing as Rust's, except for a
/// capital sigma, which Java makes final (ς) when a cased letter precedes it
/// and none follows within its word as the JDK's word breaker sees it: letters,
/// digits, soft hyphens and combining marks, and a single `-`, `.`, `'` or `_`
/// between two letters (Rust's rule stops at a digit or a hyphen).
fn java_lowercase(token: &str) -> String {
    if !token.contains('\u{3a3}') {
        return token.to_lowercase();
    }
    let chars: Vec<char> = token.chars().collect();
    let in_word =
        |c: char| c.is_alphanumeric() || c == '\u{ad}' || ('\u{300}'..='\u{36f}').contains(&c);
    let joiner = |c: char| matches!(c, '-' | '.' | '\'' | '_' | '\u{2010}');
    let letter = |k: usize| chars.get(k).is_some_and(|c| c.is_alphabetic());
    let cased = |c: char| c.is_lowercase() || c.is_uppercase();
    // Whether a cased letter lies in the word from `k` on, stepping by `step`.
    let cased_within = |mut k: isize, step: isize| -> bool {
        while k >= 0 && (k as usize) < chars.len() {
            let c = chars[k as usize];
            if in_word(c) {
                if cased(c) {
                    return true;
                }
            } else if !(joiner(c) && letter((k - 1) as usize) && letter((k + 1) as usize)) {
                return false;
            }
            k += step;
        }
        false
    };
    let mut out = String::with_capacity(token.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != '\u{3a3}' {
            out.extend(c.to_lowercase());
            continue;
        }
        let i = i as isize;
        let last = cased_within(i - 1, -1) && !cased_within(i + 1, 1);
        out.push(if last { '\u{3c2}' } else { '\u{3c3}' });
    }
    out
}

/// The tokens PTBLexer gives for one caption, before lowercasing.
pub fn ptb_tokens(caption: &str) -> Vec<String> {
    // pycocoevalcap puts one caption per line (replacing '\n' by ' '); the
    // lexer then sees a line break after it.
    let mut chars: Vec<char> = caption
        .chars()
        .map(|c| if is_newline(c) { ' ' } else { c })
        .collect();
    chars.push('\n');
    let lexer = Lexer { s: chars };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < lexer.s.len() {
        let mut best: Option<Match> = None;
        for rule in RULES {
            if let Some(m) = rule(&lexer, i) {
                if best.as_ref().is_none_or(|b| m.total > b.total) {
                    best = Some(m);
                }
            }
        }
        match best {
            Some(m) => {
                if let Some(text) = m.text {
                    tokens.push(text);
                }
                i += m.advance.max(1);
            }
            // Untokenizable: PTBLexer's default deletes it.
            None => i += 1,
        }
    }
    tokens
}

/// One rule's match at a position: `total` is what JFlex compares for the
/// longest match (trailing context included), `advance` what is consumed.
struct Match {
    total: usize,
    advance: usize,
    text: Option<String>,
}

impl Match {
    fn token(total: usize, advance: usize, text: String) -> Option<Match> {
        Some(Match {
            total,
            advance,
            text: Some(text),
        })
    }

    fn skip(len: usize) -> Option<Match> {
        Some(Match {
            total: len,
            advance: len,
            text: None,
        })
    }
}

struct Lexer {
    s: Vec<char>,
}

/// The longest run of similar characters a rule looks at (no caption has a
/// token near this long).
const MAX_RUN: usize = 1000;

type Rule = fn(&Lexer, usize) -> Option<Match>;

/// The rules of PTBLexer.flex (3.4.1) this module implements, in the file's
/// order, which breaks ties between matches of equal length.
const RULES: &[Rule] = &[
    Lexer::cplusplus,
    Lexer::assimilations,
    Lexer::sgml,
    Lexer::spmdash,
    Lexer::spamp,
    Lexer::word_redaux,
    Lexer::sword_sredaux,
    Lexer::word,
    Lexer::apoword,
    Lexer::apoword2,
    Lexer::full_url,
    Lexer::likely_url,
    Lexer::email,
    Lexer::twitter,
    Lexer::redaux_before_nonletter,
    Lexer::date,
    Lexer::number,
    Lexer::subsupnum,
    Lexer::frac,
    Lexer::frac2,
    Lexer::tbspec,
    Lexer::thing3,
    Lexer::dolsign,
    Lexer::dolsign2,
    Lexer::acronym_before_sentence,
    Lexer::abbrev3,
    Lexer::pty_ltd,
    Lexer::abbrev1,
    Lexer::abbrev2,
    Lexer::tbspec2,
    Lexer::filename,
    Lexer::word_dot_insentp,
    Lexer::dblquot,
    Lexer::lt_gt,
    Lexer::smiley,
    Lexer::asian_smiley,
    Lexer::brackets,
    Lexer::hyphens,
    Lexer::ldots,
    Lexer::marks,
    Lexer::punct,
    Lexer::hthing,
    Lexer::thing,
    Lexer::thinga,
    Lexer::left_quote,
    Lexer::redaux_alone,
    Lexer::quotes,
    Lexer::misc,
    Lexer::space,
];

fn is_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{3000}'
    )
}

fn is_newline(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{2028}' | '\u{2029}' | '\u{b}' | '\u{c}' | '\u{85}'
    )
}

fn is_spacenl(c: char) -> bool {
    is_space(c) || is_newline(c)
}

/// JFlex's `[:letter:]` (Java's `isLetter`, basic plane only: the lexer reads
/// UTF-16 units and cannot tokenise surrogates).
fn is_letter(c: char) -> bool {
    (c as u32) < 0x10000 && c.is_alphabetic()
}

/// PTBLexer's `LETTER`: letters plus the soft hyphen and combining marks.
fn is_word_letter(c: char) -> bool {
    const EXTRA: &[(u32, u32)] = &[
        (0xAD, 0xAD),
        (0x237, 0x24F),
        (0x2C2, 0x2C5),
        (0x2D2, 0x2DF),
        (0x2E5, 0x2FF),
        (0x300, 0x37D),
        (0x384, 0x385),
        (0x3CF, 0x3CF),
        (0x3F6, 0x3F6),
        (0x3FC, 0x3FF),
        (0x483, 0x487),
        (0x4CF, 0x4CF),
        (0x4F6, 0x4FF),
        (0x510, 0x525),
        (0x55A, 0x55F),
        (0x591, 0x5BD),
        (0x5BF, 0x5BF),
        (0x5C1, 0x5C2),
        (0x5C4, 0x5C5),
        (0x5C7, 0x5C7),
        (0x615, 0x61A),
        (0x63B, 0x63F),
        (0x64B, 0x65E),
        (0x670, 0x670),
        (0x6D6, 0x6EF),
        (0x6FA, 0x6FF),
        (0x70F, 0x70F),
        (0x711, 0x711),
        (0x730, 0x77F),
        (0x7A6, 0x7B1),
        (0x7CA, 0x7F5),
        (0x7FA, 0x7FA),
        (0x900, 0x903),
        (0x93C, 0x93C),
        (0x93E, 0x94E),
        (0x951, 0x955),
        (0x962, 0x963),
        (0x981, 0x983),
        (0x9BC, 0x9C4),
        (0x9C7, 0x9C8),
        (0x9CB, 0x9CD),
        (0x9D7, 0x9D7),
        (0x9E2, 0x9E3),
        (0xA01, 0xA03),
        (0xA3C, 0xA3C),
        (0xA3E, 0xA4F),
        (0xA81, 0xA83),
        (0xABC, 0xACF),
        (0xB82, 0xB82),
        (0xBBE, 0xBC2),
        (0xBC6, 0xBC8),
        (0xBCA, 0xBCD),
        (0xC01, 0xC03),
        (0xC3E, 0xC56),
        (0xD3E, 0xD44),
        (0xD46, 0xD48),
        (0xE30, 0xE3A),
        (0xE47, 0xE4E),
        (0xEB1, 0xEBC),
        (0xEC8, 0xECD),
    ];
    is_letter(c) || EXTRA.iter().any(|&(a, b)| (a..=b).contains(&(c as u32)))
}

/// JFlex's `[:digit:]` (Java's `isDigit`: decimal digits, not superscripts,
/// fractions or circled numbers) plus N'Ko digits, as PTBLexer's `DIGIT`.
fn is_digit(c: char) -> bool {
    if c.is_ascii_digit() {
        return true;
    }
    let u = c as u32;
    if c.is_ascii() || u >= 0x10000 || !c.is_numeric() || c.is_alphabetic() {
        return false;
    }
    const NOT_DECIMAL: &[(u32, u32)] = &[
        (0xB2, 0xB3),
        (0xB9, 0xB9),
        (0xBC, 0xBE),
        (0x9F4, 0x9F9),
        (0xBF0, 0xBF2),
        (0xF2A, 0xF33),
        (0x1369, 0x137C),
        (0x17F0, 0x17F9),
        (0x2070, 0x218F),
        (0x2460, 0x24FF),
        (0x2776, 0x2793),
        (0x2CFD, 0x2CFD),
        (0x3007, 0x3007),
        (0x3021, 0x303A),
        (0x3192, 0x3195),
        (0x3220, 0x3229),
        (0x3248, 0x324F),
        (0x3251, 0x325F),
        (0x3280, 0x3289),
        (0x32B1, 0x32BF),
    ];
    !NOT_DECIMAL.iter().any(|&(a, b)| (a..=b).contains(&u))
}

fn is_alnum(c: char) -> bool {
    is_letter(c) || is_digit(c)
}

fn remove_soft_hyphens(s: &str) -> String {
    let out: String = s.chars().filter(|&c| c != '\u{ad}').collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// PTBLexer's `latexQuotes` normalisation (its default).
fn latex_quotes(tok: &str, probably_left: bool) -> String {
    let (single, double) = if probably_left {
        ("`", "``")
    } else {
        ("'", "''")
    };
    let tok = replace_caseless(tok, "&apos;", "'");
    let tok = replace_caseless(&tok, "&quot;", "\"");
    let mut out = String::new();
    for c in tok.chars() {
        match c {
            '\'' => out.push_str(single),
            '"' => out.push_str(double),
            '\u{91}' | '\u{2018}' | '\u{201b}' | '\u{2039}' => out.push('`'),
            '\u{92}' | '\u{2019}' | '\u{203a}' => out.push('\''),
            '\u{93}' | '\u{201c}' | '\u{ab}' => out.push_str("``"),
            '\u{94}' | '\u{201d}' | '\u{bb}' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out
}

fn replace_caseless(s: &str, from: &str, to: &str) -> String {
    let lower = s.to_ascii_lowercase();
    if !lower.contains(from) {
        return s.to_string();
    }
    let mut out = String::new();
    let mut rest = 0;
    while let Some(at) = lower[rest..].find(from) {
        out.push_str(&s[rest..rest + at]);
        out.push_str(to);
        rest += at + from.len();
    }
    out.push_str(&s[rest..]);
    out
}

impl Lexer {
    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn text(&self, i: usize, len: usize) -> String {
        self.s[i..i + len].iter().collect()
    }

    fn is(&self, i: usize, f: impl Fn(char) -> bool) -> bool {
        self.at(i).is_some_and(f)
    }

    /// Length of the run of characters from `i` that satisfy `f`, up to
    /// [`MAX_RUN`]: rules look at runs they may not consume, and a bound keeps
    /// a pathological caption (100,000 dots) from taking quadratic time.
    fn run(&self, i: usize, f: impl Fn(char) -> bool) -> usize {
        self.s[i.min(self.s.len())..]
            .iter()
            .take(MAX_RUN)
            .take_while(|&&c| f(c))
            .count()
    }

    /// Whether `lit` is at `i`, ASCII letters compared caselessly (the lexer
    /// is `%caseless` outside character classes).
    fn lit(&self, i: usize, lit: &str) -> Option<usize> {
        let mut n = 0;
        for l in lit.chars() {
            let c = self.at(i + n)?;
            if !c.eq_ignore_ascii_case(&l) {
                return None;
            }
            n += 1;
        }
        Some(n)
    }

    /// The longest of several literals at `i`.
    fn any_lit(&self, i: usize, lits: &[&str]) -> Option<usize> {
        lits.iter().filter_map(|l| self.lit(i, l)).max()
    }

    /// `APOS = ['\u0092\u2019]|&apos;`
    fn apos(&self, i: usize) -> Option<usize> {
        match self.at(i)? {
            '\'' | '\u{92}' | '\u{2019}' => Some(1),
            _ => self.lit(i, "&apos;"),
        }
    }

    /// `APOSETCETERA = {APOS}|[`\u0091\u2018\u201B]`
    fn apos_etc(&self, i: usize) -> Option<usize> {
        match self.at(i)? {
            '`' | '\u{91}' | '\u{2018}' | '\u{201b}' => Some(1),
            _ => self.apos(i),
        }
    }

    /// `WORD = {LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*`
    fn word_len(&self, i: usize) -> Option<usize> {
        if !self.is(i, is_word_letter) {
            return None;
        }
        let body = |c| is_word_letter(c) || is_digit(c);
        let mut n = 1 + self.run(i + 1, body);
        while self.is(i + n, |c| matches!(c, '.' | '!' | '?')) && self.is(i + n + 1, is_word_letter)
        {
            n += 2 + self.run(i + n + 2, body);
        }
        Some(n)
    }

    /// `REDAUX = {APOS}([msdMSD]|re|ve|ll)`
    fn redaux_len(&self, i: usize) -> Option<usize> {
        let a = self.apos(i)?;
        if self.is(i + a, |c| matches!(c, 'm' | 's' | 'd' | 'M' | 'S' | 'D')) {
            return Some(a + 1);
        }
        self.any_lit(i + a, &["re", "ve", "ll"]).map(|n| a + n)
    }

    /// `SREDAUX = n{APOSETCETERA}t`
    fn sredaux_len(&self, i: usize) -> Option<usize> {
        let n = self.lit(i, "n")?;
        let a = self.apos_etc(i + n)?;
        self.lit(i + n + a, "t").map(|t| n + a + t)
    }

    fn cplusplus(&self, i: usize) -> Option<Match> {
        let n = self
            .lit(i, "c++")
            .or_else(|| self.lit(i, "c#"))
            .or_else(|| self.lit(i, "f#"))?;
        Match::token(n, n, self.text(i, n))
    }

    /// `cannot`, `'twas`, `'tis`, `gonna` and the like are split (the
    /// `splitAssimilations` default): the first part is returned and the rest
    /// lexed again.
    fn assimilations(&self, i: usize) -> Option<Match> {
        let keep = |n: usize, keep: usize| Match::token(n, keep, self.text(i, keep));
        if let Some(n) = self.lit(i, "cannot") {
            return keep(n, 3);
        }
        if self.at(i) == Some('\'') {
            if let Some(n) = self.lit(i, "'twas") {
                return keep(n, 2);
            }
            if let Some(n) = self.lit(i, "'tis") {
                return keep(n, 2);
            }
        }
        let n = self.any_lit(i, &["gonna", "gotta", "lemme", "gimme", "wanna"])?;
        keep(n, 3)
    }

    /// `SGML`: a tag, `<b>`, `</a>`, `<img src="x">`, kept whole (spaces made
    /// no-break spaces).
    fn sgml(&self, i: usize) -> Option<Match> {
        if self.at(i) != Some('<') {
            return None;
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-');
        let spaces = |j: usize| self.run(j, |c| c == ' ');
        let close = |j: usize| -> Option<usize> {
            let j = j + spaces(j);
            (self.at(j) == Some('>')).then_some(j + 1)
        };
        let end = match self.at(i + 1)? {
            '!' | '?' => {
                if !self.is(i + 2, |c| c.is_ascii_alphabetic() || c == '-') {
                    return None;
                }
                let j = i + 3 + self.run(i + 3, |c| !matches!(c, '>' | '\r' | '\n'));
                close(j)?
            }
            '/' => {
                if !self.is(i + 2, |c| c.is_ascii_alphabetic()) {
                    return None;
                }
                close(i + 3 + self.run(i + 3, name_char))?
            }
            c if c.is_ascii_alphabetic() => {
                let mut j = i + 2 + self.run(i + 2, name_char);
                // ([ ]+(NAME|NAME[ ]*=[ ]*('[^']*'|"[^"]*")))*
                loop {
                    let sp = spaces(j);
                    if sp == 0 || !self.is(j + sp, |c| c.is_ascii_alphabetic()) {
                        break;
                    }
                    let mut k = j + sp + 1 + self.run(j + sp + 1, name_char);
                    let eq = k + spaces(k);
                    if self.at(eq) == Some('=') {
                        let v = eq + 1 + spaces(eq + 1);
                        if let Some(q @ ('\'' | '"')) = self.at(v) {
                            let body = self.run(v + 1, |c| c != q);
                            if self.at(v + 1 + body) == Some(q) {
                                k = v + 2 + body;
                            }
                        }
                    }
                    j = k;
                }
                let j = j + spaces(j);
                let j = j + usize::from(self.at(j) == Some('/'));
                close(j)?
            }
            _ => return None,
        };
        let n = end - i;
        Match::token(n, n, self.text(i, n).replace(' ', "\u{a0}"))
    }

    /// `FULLURL = https?:\/\/[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]`
    fn full_url(&self, i: usize) -> Option<Match> {
        let scheme = self.lit(i, "https://").or_else(|| self.lit(i, "http://"))?;
        let body = |c: char| {
            !matches!(
                c,
                ' ' | '\t' | '\n' | '\u{c}' | '\r' | '"' | '<' | '>' | '|' | '(' | ')' | '{' | '}'
            )
        };
        let run = self.run(i + scheme, body);
        let last = (1..run)
            .rev()
            .find(|&k| !matches!(self.s[i + scheme + k], '.' | '!' | '?' | ',' | '-'))?;
        let n = scheme + last + 1;
        Match::token(n, n, self.text(i, n))
    }

    /// `LIKELYURL`: `www.` names and names ending in .com/.net/.org/.edu,
    /// with an optional path.
    fn likely_url(&self, i: usize) -> Option<Match> {
        let mut best: Option<usize> = None;
        // www\.([^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}
        if let Some(w) = self.lit(i, "www.") {
            let seg = |c: char| {
                !matches!(
                    c,
                    ' ' | '\t'
                        | '\n'
                        | '\u{c}'
                        | '\r'
                        | '"'
                        | '<'
                        | '>'
                        | '|'
                        | '.'
                        | '!'
                        | '?'
                        | '('
                        | ')'
                        | '{'
                        | '}'
                        | ','
                )
            };
            let mut j = i + w;
            loop {
                let l = self.run(j, seg);
                if l == 0 || self.at(j + l) != Some('.') {
                    break;
                }
                j += l + 1;
                let tld = self.run(j, |c| c.is_ascii_alphabetic()).min(4);
                if tld >= 2 {
                    best = best.max(Some(j + tld - i));
                }
            }
        }
        // ([^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(com|net|org|edu); ",-_" is a range.
        let seg = |c: char| {
            !matches!(
                c,
                ' ' | '\t'
                    | '\n'
                    | '\u{c}'
                    | '\r'
                    | '"'
                    | '`'
                    | '\''
                    | '<'
                    | '>'
                    | '|'
                    | '.'
                    | '!'
                    | '?'
                    | '('
                    | ')'
                    | '{'
                    | '}'
                    | ','..='_' | '$'
            )
        };
        let mut j = i;
        loop {
            let l = self.run(j, seg);
            if l == 0 || self.at(j + l) != Some('.') {
                break;
            }
            j += l + 1;
            if let Some(t) = self.any_lit(j, &["com", "net", "org", "edu"]) {
                best = best.max(Some(j + t - i));
            }
        }
        let mut n = best?;
        // (\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?
        if self.at(i + n) == Some('/') {
            let run = self.run(i + n + 1, |c| {
                !matches!(
                    c,
                    ' ' | '\t' | '\n' | '\u{c}' | '\r' | '"' | '<' | '>' | '|' | '(' | ')'
                )
            });
            if let Some(last) = (1..run).rev().find(|&k| {
                !matches!(
                    self.s[i + n + 1 + k],
                    '.' | '!' | '?' | '{' | '}' | ',' | '-'
                )
            }) {
                n += 2 + last;
            }
        }
        Match::token(n, n, self.text(i, n))
    }

    /// `EMAIL`: `name@host.domain`, optionally in angle brackets.
    fn email(&self, i: usize) -> Option<Match> {
        let open = if self.at(i) == Some('<') {
            1
        } else {
            self.lit(i, "&lt;").unwrap_or(0)
        };
        let start = i + open;
        if !self.is(start, |c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let excluded = |c: char| {
            matches!(
                c,
                ' ' | '\t'
                    | '\n'
                    | '\u{c}'
                    | '\r'
                    | '"'
                    | '<'
                    | '>'
                    | '|'
                    | '('
                    | ')'
                    | '\u{a0}'
                    | '{'
                    | '}'
            )
        };
        let local = 1 + self.run(start + 1, |c| !excluded(c));
        let mut best: Option<usize> = None;
        for at in (start + 1..start + local).filter(|&k| self.s[k] == '@') {
            // ([^...]+\.)*([^...]+) after the @: dot-separated, non-empty parts.
            let mut j = at + 1;
            let mut end = None;
            loop {
                let l = self.run(j, |c| !excluded(c) && c != '.');
                if l == 0 {
                    break;
                }
                end = Some(j + l);
                if self.at(j + l) != Some('.') {
                    break;
                }
                j += l + 1;
            }
            if let Some(e) = end {
                best = best.max(Some(e));
            }
        }
        let mut end = best?;
        if self.at(end) == Some('>') {
            end += 1;
        } else if let Some(g) = self.lit(end, "&gt;") {
            end += g;
        }
        let n = end - i;
        Match::token(n, n, self.text(i, n))
    }

    /// `{FILENAME}/({SPACENL}|[.?!,])`: "1.jpg".
    fn filename(&self, i: usize) -> Option<Match> {
        const EXT: &[&str] = &[
            "bat", "bmp", "c", "class", "cgi", "cpp", "dll", "doc", "docx", "exe", "gif", "gz",
            "h", "htm", "html", "jar", "java", "jpeg", "jpg", "mov", "mp3", "pdf", "php", "pl",
            "png", "ppt", "ps", "py", "sql", "tar", "txt", "wav", "x", "xml", "zip",
        ];
        let part = |c: char| is_word_letter(c) || is_digit(c);
        let mut j = i + self.run(i, part);
        if j == i {
            return None;
        }
        let mut best = None;
        while self.at(j) == Some('.') {
            let l = self.run(j + 1, part);
            if l == 0 {
                break;
            }
            // This part may be the extension, if what follows ends the name.
            let after = j + 1 + l;
            if EXT.iter().any(|e| self.lit(j + 1, e) == Some(l))
                && self.is(after, |c| {
                    is_spacenl(c) || matches!(c, '.' | '?' | '!' | ',')
                })
            {
                best = Some(after - i);
            }
            j = after;
        }
        let n = best?;
        Match::token(n + 1, n, self.text(i, n))
    }

    /// `SPMDASH`: en and em dashes become `--`.
    fn spmdash(&self, i: usize) -> Option<Match> {
        let n = match self.at(i)? {
            '\u{96}' | '\u{97}' | '\u{2013}' | '\u{2014}' | '\u{2015}' => 1,
            '&' => self.any_lit(i, &["&md;", "&mdash;", "&ndash;"])?,
            _ => return None,
        };
        Match::token(n, n, "--".into())
    }

    fn spamp(&self, i: usize) -> Option<Match> {
        let n = self.lit(i, "&amp;")?;
        Match::token(n, n, "&".into())
    }

    /// `{WORD}/{REDAUX}`: "dog" of "dog's".
    fn word_redaux(&self, i: usize) -> Option<Match> {
        let w = self.word_len(i)?;
        let r = self.redaux_len(i + w)?;
        Match::token(w + r, w, remove_soft_hyphens(&self.text(i, w)))
    }

    /// `{SWORD}/{SREDAUX}`: "do" of "don't", "ca" of "can't".
    fn sword_sredaux(&self, i: usize) -> Option<Match> {
        // SREDAUX is the 'n' that ends the run of letters, an apostrophe and 't'.
        let run = self.run(i, |c| c.is_ascii_alphabetic() || c == '\u{ad}');
        let p = run.checked_sub(1).filter(|&p| p > 0)?;
        let r = self.sredaux_len(i + p)?;
        // SWORD: letters whose last (soft hyphens aside) is not an n.
        let last = (0..p).rev().find(|&q| self.s[i + q] != '\u{ad}')?;
        if matches!(self.s[i + last], 'n' | 'N') {
            return None;
        }
        Match::token(p + r, p, remove_soft_hyphens(&self.text(i, p)))
    }

    fn word(&self, i: usize) -> Option<Match> {
        let w = self.word_len(i)?;
        Match::token(w, w, remove_soft_hyphens(&self.text(i, w)))
    }

    /// `APOWORD`: words PTB keeps whole around an apostrophe (`o'er`, `ma'am`,
    /// `'90s`, `'til`, `rock 'n' roll`).
    fn apoword(&self, i: usize) -> Option<Match> {
        let mut best: Option<usize> = None;
        let mut offer = |n: Option<usize>| {
            if let Some(n) = n {
                best = Some(best.map_or(n, |b| b.max(n)));
            }
        };
        // {APOS}n{APOS}?
        offer(self.apos(i).and_then(|a| {
            self.lit(i + a, "n")
                .map(|n| a + n + self.apos(i + a + n).unwrap_or(0))
        }));
        // [lLdDjJ]{APOS}
        if self.is(i, |c| matches!(c, 'l' | 'L' | 'd' | 'D' | 'j' | 'J')) {
            offer(self.apos(i + 1).map(|a| 1 + a));
        }
        // Dunkin{APOS}|somethin{APOS}|ol{APOS}
        for w in ["dunkin", "somethin", "ol"] {
            offer(self.lit(i, w).and_then(|n| self.apos(i + n).map(|a| n + a)));
        }
        // {APOS}em | {APOS}[2-9]0s | {APOS}till? | {APOS}cause
        if let Some(a) = self.apos(i) {
            offer(self.lit(i + a, "em").map(|n| a + n));
            if self.is(i + a, |c| ('2'..='9').contains(&c)) && self.at(i + a + 1) == Some('0') {
                offer(self.lit(i + a + 2, "s").map(|n| a + 2 + n));
            }
            offer(self.any_lit(i + a, &["til", "till"]).map(|n| a + n));
            offer(self.lit(i + a, "cause").map(|n| a + n));
        }
        // [A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*
        if self.is(i, |c| matches!(c, 'A'..='H' | 'J'..='X' | 'Z' | 'n')) {
            if let Some(a) = self.apos_etc(i + 1) {
                let l = self.run(i + 1 + a, is_letter);
                if l >= 2 {
                    offer(Some(1 + a + l));
                }
            }
        }
        // [:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*
        let l = self.run(i, is_letter);
        if l >= 2 && self.is(i + l - 1, |c| "aeiouyAEIOUY".contains(c)) {
            if let Some(a) = self.apos_etc(i + l) {
                if self.is(i + l + a, |c| "aeiou".contains(c) || c.is_ascii_uppercase()) {
                    offer(Some(l + a + 1 + self.run(i + l + a + 1, is_letter)));
                }
            }
        }
        // cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l
        offer(
            self.lit(i, "cont'd")
                .map(|n| n + usize::from(self.at(i + n) == Some('.'))),
        );
        offer(self.any_lit(
            i,
            &[
                "'twas",
                "nor'easter",
                "c'mon",
                "e'er",
                "s'mores",
                "ev'ry",
                "li'l",
                "nat'l",
            ],
        ));
        // O{APOSETCETERA}o
        if let Some(o) = self.lit(i, "o") {
            offer(
                self.apos_etc(i + o)
                    .and_then(|a| self.lit(i + o + a, "o").map(|n| o + a + n)),
            );
        }
        let n = best?;
        Match::token(n, n, self.text(i, n))
    }

    /// `{APOWORD2}/[:letter:]`: "y'" of "y'all".
    fn apoword2(&self, i: usize) -> Option<Match> {
        let y = self.lit(i, "y")?;
        let a = self.apos(i + y)?;
        if !self.is(i + y + a, is_letter) {
            return None;
        }
        Match::token(y + a + 1, y + a, self.text(i, y + a))
    }

    /// `TWITTER`: @name and #tag.
    fn twitter(&self, i: usize) -> Option<Match> {
        let n = match self.at(i)? {
            '@' if self.is(i + 1, |c| c.is_ascii_alphabetic() || c == '_') => {
                2 + self.run(i + 2, |c| c.is_ascii_alphanumeric() || c == '_')
            }
            '#' if self.is(i + 1, is_word_letter) => 1 + self.run(i + 1, is_word_letter),
            _ => return None,
        };
        Match::token(n, n, self.text(i, n))
    }

    /// `{REDAUX}/[^A-Za-z]` and `{SREDAUX}/[^A-Za-z]`: "'s", "n't".
    fn redaux_before_nonletter(&self, i: usize) -> Option<Match> {
        let n = self.redaux_len(i).or_else(|| self.sredaux_len(i))?;
        if !self.is(i + n, |c| !c.is_ascii_alphabetic()) {
            return None;
        }
        Match::token(n + 1, n, latex_quotes(&self.text(i, n), false))
    }

    /// `DATE = {DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}`
    fn date(&self, i: usize) -> Option<Match> {
        let sep = |c| c == '-' || c == '/';
        let a = self.run(i, is_digit);
        if !(1..=2).contains(&a) || !self.is(i + a, sep) {
            return None;
        }
        let b = self.run(i + a + 1, is_digit);
        if !(1..=2).contains(&b) || !self.is(i + a + 1 + b, sep) {
            return None;
        }
        let c = self.run(i + a + b + 2, is_digit).min(4);
        if c < 2 {
            return None;
        }
        let n = a + b + 2 + c;
        Match::token(n, n, self.text(i, n))
    }

    /// `NUMBER = [\-+]?{DIGIT}+|[\-+]?{DIGIT}*([.:,\u00AD\u066B\u066C]{DIGIT}+)+`
    fn number(&self, i: usize) -> Option<Match> {
        let sign = usize::from(self.is(i, |c| c == '-' || c == '+'));
        let mut n = sign + self.run(i + sign, is_digit);
        let sep = |c| matches!(c, '.' | ':' | ',' | '\u{ad}' | '\u{66b}' | '\u{66c}');
        while self.is(i + n, sep) && self.is(i + n + 1, is_digit) {
            n += 1 + self.run(i + n + 1, is_digit);
        }
        if n == sign {
            return None;
        }
        Match::token(n, n, remove_soft_hyphens(&self.text(i, n)))
    }

    fn subsupnum(&self, i: usize) -> Option<Match> {
        let sign = usize::from(self.is(i, |c| {
            matches!(c, '\u{207a}' | '\u{207b}' | '\u{208a}' | '\u{208b}')
        }));
        let sup = self.run(i + sign, |c| {
            matches!(
                c,
                '\u{2070}' | '\u{b9}' | '\u{b2}' | '\u{b3}' | '\u{2074}'..='\u{2079}'
            )
        });
        let sub = self.run(i + sign, |c| ('\u{2080}'..='\u{2089}').contains(&c));
        let n = sign + sup.max(sub);
        if n == sign {
            return None;
        }
        Match::token(n, n, self.text(i, n))
    }

    /// `FRAC = ({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4}`,
    /// its space made a no-break space.
    fn frac(&self, i: usize) -> Option<Match> {
        let simple = |j: usize| -> Option<usize> {
            let a = self.run(j, is_digit);
            if !(1..=4).contains(&a) {
                return None;
            }
            let slash = match (self.at(j + a), self.at(j + a + 1)) {
                (Some('/' | '\u{2044}'), _) => 1,
                (Some('\\'), Some('/')) => 2,
                _ => return None,
            };
            let b = self.run(j + a + slash, is_digit).min(4);
            (b > 0).then_some(a + slash + b)
        };
        let mut best = simple(i);
        let a = self.run(i, is_digit);
        if (1..=4).contains(&a) && self.is(i + a, |c| matches!(c, '-' | ' ' | '\u{a0}')) {
            if let Some(m) = simple(i + a + 1) {
                best = Some(best.map_or(a + 1 + m, |b| b.max(a + 1 + m)));
            }
        }
        let n = best?;
        Match::token(n, n, self.text(i, n).replace(' ', "\u{a0}"))
    }

    fn frac2(&self, i: usize) -> Option<Match> {
        let c = self.at(i)?;
        let text = match c {
            '\u{bc}' => "1/4".to_string(),
            '\u{bd}' => "1/2".to_string(),
            '\u{be}' => "3/4".to_string(),
            '\u{2153}' => "1/3".to_string(),
            '\u{2154}' => "2/3".to_string(),
            '\u{2155}'..='\u{215e}' => c.to_string(),
            _ => return None,
        };
        Match::token(1, 1, text)
    }

    /// `TBSPEC`: PTB's own bracket names and a few fixed forms.
    fn tbspec(&self, i: usize) -> Option<Match> {
        let mut best = None;
        if self.at(i) == Some('-') {
            for b in ["rrb", "lrb", "rcb", "lcb", "rsb", "lsb"] {
                if self.lit(i + 1, b).is_some() && self.at(i + 4) == Some('-') {
                    best = Some(5);
                }
            }
        }
        let n = best
            .or_else(|| self.any_lit(i, &["c.d.s", "pro-", "anti-"]))
            .or_else(|| {
                let s = self.lit(i, "s")?;
                let amp = self.lit(i + s, "&amp;").or(self.lit(i + s, "&"))?;
                self.any_lit(i + s + amp, &["p-500", "ls"])
                    .map(|n| s + amp + n)
            })
            .or_else(|| {
                let cap = self.any_lit(i, &["cap", "c"])?;
                let a = self.apos(i + cap)?;
                let rest = if cap == 3 { "n" } else { "est" };
                self.lit(i + cap + a, rest).map(|n| cap + a + n)
            })?;
        Match::token(n, n, replace_caseless(&self.text(i, n), "&amp;", "&"))
    }

    /// `THING3 = [A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}`:
    /// "and/or", "black/white".
    fn thing3(&self, i: usize) -> Option<Match> {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        // A part and up to two hyphenated letter groups: its possible ends.
        let part = |j: usize| -> Vec<usize> {
            let a = self.run(j, alnum);
            if a == 0 {
                return Vec::new();
            }
            let mut ends = vec![j + a];
            let mut k = j + a;
            for _ in 0..2 {
                if self.at(k) != Some('-') {
                    break;
                }
                let l = self.run(k + 1, |c| c.is_ascii_alphabetic());
                if l == 0 {
                    break;
                }
                k += 1 + l;
                ends.push(k);
            }
            ends
        };
        let slash = |k: usize| match (self.at(k), self.at(k + 1)) {
            (Some('/'), _) => Some(1),
            (Some('\\'), Some('/')) => Some(2),
            _ => None,
        };
        let mut best = None;
        for e1 in part(i) {
            let Some(s1) = slash(e1) else { continue };
            for e2 in part(e1 + s1) {
                best = best.max(Some(e2));
                if let Some(s2) = slash(e2) {
                    if let Some(&e3) = part(e2 + s2).iter().max() {
                        best = best.max(Some(e3));
                    }
                }
            }
        }
        let n = best? - i;
        Match::token(n, n, self.text(i, n))
    }

    /// `DOLSIGN = ([A-Z]*\$|#)`
    fn dolsign(&self, i: usize) -> Option<Match> {
        let up = self.run(i, |c| c.is_ascii_uppercase());
        let n = if self.at(i + up) == Some('$') {
            up + 1
        } else if self.at(i) == Some('#') {
            1
        } else {
            return None;
        };
        Match::token(n, n, self.text(i, n))
    }

    /// `DOLSIGN2`: currency signs, cent and pound spelt as PTB does.
    fn dolsign2(&self, i: usize) -> Option<Match> {
        let text = match self.at(i)? {
            '\u{a2}' => "cents".to_string(),
            '\u{a3}' => "#".to_string(),
            '\u{80}' | '\u{a4}' | '\u{20a0}' | '\u{20ac}' => "$".to_string(),
            c @ ('\u{a5}' | '\u{60b}' | '\u{e3f}' | '\u{20a4}' | '\u{ffe0}' | '\u{ffe1}'
            | '\u{ffe5}' | '\u{ffe6}') => c.to_string(),
            _ => return None,
        };
        Match::token(1, 1, text)
    }

    /// Lengths of `ACRO = [A-Za-z](\.[A-Za-z])*` at `i`, shortest first.
    fn acro_lens(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        if !self.is(i, |c| c.is_ascii_alphabetic()) {
            return out;
        }
        let mut n = 1;
        out.push(n);
        while self.at(i + n) == Some('.') && self.is(i + n + 1, |c| c.is_ascii_alphabetic()) {
            n += 2;
            out.push(n);
        }
        out
    }

    /// `{ACRONYM}/({SPACENLS})(The|He|...){SPACENL}`: an acronym ending a
    /// sentence. A single letter gives the letter and the period apart, a
    /// longer one keeps its period and gives another.
    fn acronym_before_sentence(&self, i: usize) -> Option<Match> {
        const NEXT: &[&str] = &[
            "About",
            "According",
            "Additionally",
            "After",
            "An",
            "A",
            "As",
            "At",
            "But",
            "Earlier",
            "He",
            "Her",
            "Here",
            "However",
            "If",
            "In",
            "It",
            "Last",
            "Many",
            "More",
            "Mr.",
            "Ms.",
            "Now",
            "Once",
            "One",
            "Other",
            "Our",
            "She",
            "Since",
            "So",
            "Some",
            "Such",
            "That",
            "The",
            "Their",
            "Then",
            "There",
            "These",
            "They",
            "This",
            "We",
            "When",
            "While",
            "What",
            "Yet",
            "You",
        ];
        let mut best: Option<(usize, usize)> = None;
        for a in self.acro_lens(i) {
            if self.at(i + a) != Some('.') {
                continue;
            }
            let len = a + 1;
            let sp = self.run(i + len, is_spacenl);
            if sp == 0 {
                continue;
            }
            let j = i + len + sp;
            for w in NEXT {
                // The first letter is a character class (case-sensitive).
                let first = w.chars().next().expect("non-empty");
                if self.at(j) != Some(first) {
                    continue;
                }
                if let Some(n) = self.lit(j + 1, &w[1..]) {
                    if self.is(j + 1 + n, is_spacenl) {
                        let total = len + sp + 1 + n + 1;
                        if best.is_none_or(|(t, _)| total > t) {
                            best = Some((total, len));
                        }
                    }
                }
            }
        }
        let (total, len) = best?;
        if len == 2 {
            Match::token(total, 1, self.text(i, 1))
        } else {
            Match::token(total, len - 1, self.text(i, len))
        }
    }

    /// `{ABBREV3}/{SPACENL}?[:digit:]`: "no. 5", "fig. 2", "ca. 1900".
    fn abbrev3(&self, i: usize) -> Option<Match> {
        let w = self.any_lit(
            i,
            &[
                "ca", "fig", "figs", "prop", "no", "nos", "art", "bldg", "pp", "op",
            ],
        )?;
        if self.at(i + w) != Some('.') {
            return None;
        }
        let n = w + 1;
        let sp = usize::from(self.is(i + n, is_spacenl));
        if !self.is(i + n + sp, is_digit) {
            return None;
        }
        Match::token(n + sp + 1, n, self.text(i, n))
    }

    /// `(pt[eyEY]|co)\./{SPACE}(ltd|lim)`
    fn pty_ltd(&self, i: usize) -> Option<Match> {
        let w = if self.lit(i, "pt").is_some() && self.is(i + 2, |c| "eyEY".contains(c)) {
            3
        } else {
            self.lit(i, "co")?
        };
        if self.at(i + w) != Some('.') || !self.is(i + w + 1, is_space) {
            return None;
        }
        let n = w + 1;
        let rest = self.any_lit(i + n + 1, &["ltd", "lim"])?;
        Match::token(n + 1 + rest, n, self.text(i, n))
    }

    /// `ABBREV1`: abbreviations usually followed by lowercase words ("etc.",
    /// "Inc.", "Jan."). Before a sentence end (or at the end of the text)
    /// they keep their period and give another.
    fn abbrev1(&self, i: usize) -> Option<Match> {
        const LITS: &[&str] = &[
            // ABMONTH
            "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
            // ABDAYS
            "mon", "tue", "tues", "wed", "thu", "thurs", "fri", // ABSTATE, caseless
            "ala", "ariz", "calif", "colo", "conn", "ct", "dak", "fla", "ga", "ind", "kan", "kans",
            "ky", "md", "mich", "minn", "mo", "mont", "neb", "nev", "okla", "penn", "tenn", "va",
            "vt", "wis", "wisc", "wyo", // ABCOMP
            "inc", "co", "cos", "corp", "pte", "pty", "ptes", "ptys", "ppte", "ppty", "pptes",
            "pptys", "ltd", "plc", "rt", "bancorp", "bhd", "assn", "univ", "intl", "sys",
            // ABNUM
            "tel", "est", "ext", "sq", // ABPTIT
            "jr", "sr", "bros", "ed.d", "ph.d", "blvd", "rd", "esq", // the rest
            "etc", "al", "seq", "bldg",
        ];
        // ABSTATE entries whose first letter is a case-sensitive class.
        const CLASS_FIRST: &[&str] = &[
            "Az", "Ark", "Del", "Ill", "La", "Mass", "Miss", "Ore", "Pa", "Tex", "Wash",
        ];
        let mut w = self.any_lit(i, LITS);
        for l in CLASS_FIRST {
            if self.at(i) == l.chars().next() {
                if let Some(n) = self.lit(i + 1, &l[1..]) {
                    w = w.max(Some(n + 1));
                }
            }
        }
        let w = w?;
        if self.at(i + w) != Some('.') {
            return None;
        }
        let n = w + 1;
        let text = self.text(i, n);
        // {SENTEND} = {SPACENL}({SPACENL}|[:uppercase:]) (SGML left out)
        let sentend =
            self.is(i + n, is_spacenl) && self.is(i + n + 1, |c| is_spacenl(c) || c.is_uppercase());
        if sentend {
            Match::token(n + 2, n - 1, text)
        } else if i + n + 2 <= self.s.len() {
            Match::token(n + 2, n, text)
        } else {
            Match::token(n, n - 1, text)
        }
    }

    /// `ABBREV2`: titles and acronyms kept with their period ("Mr.", "St.",
    /// "U.S.", "a.m.", a single letter).
    fn abbrev2(&self, i: usize) -> Option<Match> {
        const LITS: &[&str] = &[
            "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty",
            "attys", "lt", "col", "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt",
            "cpl", "pvt", "capt", "st", "ste", "ave", "pres", "lieut", "hon", "brig", "cmdr",
            "comdr", "pfc", "spc", "supt", "supts", "det", "mt", "ft", "adj", "adv", "asst",
            "assoc", "ens", "insp", "mlle", "mme", "msgr", "sfc", // ABBREV4's own
            "vs", "alex", "wm", "jos", "cie", "a.k.a", "cf", "treas", "ph", // ABCOMP2
            "invt", "elec", "natl", "mfg", "mtg", "dept",
        ];
        let mut lens: Vec<usize> = LITS.iter().filter_map(|l| self.lit(i, l)).collect();
        if self.at(i) == Some('M') {
            lens.extend(self.lit(i + 1, "iss").map(|n| n + 1));
        }
        lens.extend(self.acro_lens(i));
        let w = lens
            .into_iter()
            .filter(|&w| self.at(i + w) == Some('.'))
            .max()?;
        Match::token(w + 1, w + 1, self.text(i, w + 1))
    }

    /// `{TBSPEC2}/{SPACENL}`: "'90".
    fn tbspec2(&self, i: usize) -> Option<Match> {
        let a = self.apos(i)?;
        if !(self.is(i + a, |c| c.is_ascii_digit())
            && self.is(i + a + 1, |c| c.is_ascii_digit())
            && self.is(i + a + 2, is_spacenl))
        {
            return None;
        }
        Match::token(a + 3, a + 2, self.text(i, a + 2))
    }

    /// `X\./{INSENTP}`: a word keeps a period that a comma, colon or
    /// semicolon follows.
    fn dot_insentp(&self, i: usize, len: usize) -> Option<(usize, usize)> {
        (self.at(i + len) == Some('.')
            && self.is(i + len + 1, |c| matches!(c, ',' | ';' | ':' | '\u{3001}')))
        .then_some((len + 2, len + 1))
    }

    fn word_dot_insentp(&self, i: usize) -> Option<Match> {
        let (total, n) = self.dot_insentp(i, self.word_len(i)?)?;
        Match::token(total, n, remove_soft_hyphens(&self.text(i, n)))
    }

    /// `"` opening (before a letter, digit or $) or closing.
    fn dblquot(&self, i: usize) -> Option<Match> {
        let n = if self.at(i) == Some('"') {
            1
        } else {
            self.lit(i, "&quot;")?
        };
        let left = self.is(i + n, |c| c.is_ascii_alphanumeric() || c == '$');
        let text = latex_quotes(&self.text(i, n), left);
        Match::token(n + usize::from(left), n, text)
    }

    fn lt_gt(&self, i: usize) -> Option<Match> {
        let (n, text) = match self.at(i)? {
            '<' if self.at(i + 1) == Some('<') => (2, "<<"),
            '>' if self.at(i + 1) == Some('>') => (2, ">>"),
            '<' => (1, "<"),
            '>' => (1, ">"),
            '&' => {
                if let Some(n) = self.lit(i, "&lt;") {
                    (n, "<")
                } else {
                    (self.lit(i, "&gt;")?, ">")
                }
            }
            _ => return None,
        };
        Match::token(n, n, text.into())
    }

    /// `{SMILEY}/[^A-Za-z0-9]`
    fn smiley(&self, i: usize) -> Option<Match> {
        let mut n = usize::from(self.is(i, |c| c == '<' || c == '>'));
        if !self.is(i + n, |c| matches!(c, ':' | ';' | '=')) {
            return None;
        }
        n += 1;
        n += usize::from(self.is(i + n, |c| matches!(c, '-' | 'o' | '*' | '\'')));
        if !self.is(i + n, |c| "()DPdpO\\{@|[]".contains(c)) {
            return None;
        }
        n += 1;
        if !self.is(i + n, |c| !c.is_ascii_alphanumeric()) {
            return None;
        }
        let text = self.text(i, n).replace('(', "-LRB-").replace(')', "-RRB-");
        Match::token(n + 1, n, text)
    }

    /// `ASIANSMILEY`: "^_^", "(x.x)", "(^-^)", its brackets spelt as PTB's.
    fn asian_smiley(&self, i: usize) -> Option<Match> {
        let eye = |c: char| "^x=~<>".contains(c);
        let eye_or_dash = |c: char| eye(c) || c == '-' || c == '\'';
        let n = if self.is(i, eye_or_dash)
            && self.at(i + 1) == Some('_')
            && self.is(i + 2, eye_or_dash)
        {
            3
        } else if self.at(i) == Some('(') {
            let inner = if self.is(i + 1, eye_or_dash) {
                let mid = usize::from(self.is(i + 2, |c| c == '_' || c == '.'));
                if self.is(i + 2 + mid, eye_or_dash) {
                    Some(2 + mid)
                } else {
                    None
                }
            } else {
                None
            };
            let dashed = (self.is(i + 1, |c| eye(c) || c == '\'')
                && self.at(i + 2) == Some('-')
                && self.is(i + 3, |c| eye(c) || c == '\'' || c == '`'))
            .then_some(3);
            match inner
                .into_iter()
                .chain(dashed)
                .find(|&k| self.at(i + 1 + k) == Some(')'))
            {
                Some(k) => k + 2,
                None => return None,
            }
        } else if self.is(i, eye) && self.at(i + 1) == Some('.') {
            // [\^x=~<>]\.\[\^x=~<>] reads "\[" and what follows as literals.
            2 + self.lit(i + 2, "[^x=~<>]")?
        } else {
            return None;
        };
        let text = self.text(i, n).replace('(', "-LRB-").replace(')', "-RRB-");
        Match::token(n, n, text)
    }

    fn brackets(&self, i: usize) -> Option<Match> {
        let text = match self.at(i)? {
            '{' => "-LCB-",
            '}' => "-RCB-",
            '[' => "-LSB-",
            ']' => "-RSB-",
            '(' => "-LRB-",
            ')' => "-RRB-",
            _ => return None,
        };
        Match::token(1, 1, text.into())
    }

    /// `\-+`: three or four hyphens are a dash, `--`.
    fn hyphens(&self, i: usize) -> Option<Match> {
        let n = self.run(i, |c| c == '-');
        match n {
            0 => None,
            3 | 4 => Match::token(n, n, "--".into()),
            _ => Match::token(n, n, self.text(i, n)),
        }
    }

    /// `LDOTS = \.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026]` as `...`.
    fn ldots(&self, i: usize) -> Option<Match> {
        let dots = self.run(i, |c| c == '.').min(5);
        let mut n = if dots >= 3 { dots } else { 0 };
        let mut spaced = 0;
        while spaced < 4
            && self.at(i + 2 * spaced) == Some('.')
            && self.is(i + 2 * spaced + 1, |c| c == ' ' || c == '\u{a0}')
        {
            spaced += 1;
        }
        // (\.[ ]){k}\. for the largest k in 2..=4 that ends in a period
        for k in (2..=spaced).rev() {
            if self.at(i + 2 * k) == Some('.') {
                n = n.max(2 * k + 1);
                break;
            }
        }
        if self.is(i, |c| c == '\u{85}' || c == '\u{2026}') {
            n = 1;
        }
        if n == 0 {
            return None;
        }
        Match::token(n, n, "...".into())
    }

    /// `FNMARKS` (@+, #+, _+) and `ASTS` (\*+, (\\\*){1,3}).
    fn marks(&self, i: usize) -> Option<Match> {
        let c = self.at(i)?;
        let n = match c {
            '@' | '#' | '_' | '*' => self.run(i, |x| x == c),
            '\\' => {
                let mut k = 0;
                while k < 3
                    && self.at(i + 2 * k) == Some('\\')
                    && self.at(i + 2 * k + 1) == Some('*')
                {
                    k += 1;
                }
                2 * k
            }
            _ => 0,
        };
        if n == 0 {
            return None;
        }
        Match::token(n, n, self.text(i, n))
    }

    /// `INSENTP`, `[?!]+`, sentence-final marks, `=` and `/`.
    fn punct(&self, i: usize) -> Option<Match> {
        let c = self.at(i)?;
        let n = match c {
            '?' | '!' => self.run(i, |x| x == '?' || x == '!'),
            ','
            | ';'
            | ':'
            | '\u{3001}'
            | '.'
            | '\u{a1}'
            | '\u{bf}'
            | '\u{37e}'
            | '\u{589}'
            | '\u{61f}'
            | '\u{6d4}'
            | '\u{700}'..='\u{702}'
            | '\u{7fa}'
            | '\u{3002}'
            | '='
            | '/' => 1,
            _ => return None,
        };
        Match::token(n, n, self.text(i, n))
    }

    /// `HTHING = [A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO2}\.))+`:
    /// "3.5-inch", "U.S.-made".
    fn hthing_len(&self, i: usize) -> Option<usize> {
        if !self.is(i, |c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let head = 1 + self.run(i + 1, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | ',' | '\u{ad}')
        });
        // Longest chain of -part groups; a group is alphanumerics or an acronym with its period.
        fn groups(lx: &Lexer, j: usize) -> Option<usize> {
            if lx.at(j) != Some('-') {
                return None;
            }
            let mut options = Vec::new();
            let a = lx.run(j + 1, |c| c.is_ascii_alphanumeric() || c == '\u{ad}');
            if a > 0 {
                options.push(1 + a);
            }
            for l in lx.acro_lens(j + 1).into_iter().filter(|&l| l >= 3) {
                if lx.at(j + 1 + l) == Some('.') {
                    options.push(2 + l);
                }
            }
            options
                .into_iter()
                .map(|g| g + groups(lx, j + g).unwrap_or(0))
                .max()
        }
        groups(self, i + head).map(|g| head + g)
    }

    fn hthing(&self, i: usize) -> Option<Match> {
        let h = self.hthing_len(i)?;
        let (total, n) = self.dot_insentp(i, h).unwrap_or((h, h));
        Match::token(total, n, remove_soft_hyphens(&self.text(i, n)))
    }

    /// `THING`: letters and digits joined by hyphens or underscores, with
    /// d'/o'/l' prefixes ("t-shirt", "o'clock", "10-year-old").
    fn thing_len(&self, i: usize) -> Option<usize> {
        let segment = |j: usize| -> Option<usize> {
            let plain = self.run(j, is_alnum);
            let prefixed = if self.is(j, |c| "dDoOlL".contains(c)) {
                self.apos_etc(j + 1).and_then(|a| {
                    let l = self.run(j + 1 + a, is_alnum);
                    (l >= 2).then_some(1 + a + l)
                })
            } else {
                None
            };
            let n = plain.max(prefixed.unwrap_or(0));
            (n > 0).then_some(n)
        };
        let mut n = segment(i)?;
        while self.is(i + n, |c| {
            matches!(c, '-' | '_' | '\u{58a}' | '\u{2010}' | '\u{2011}')
        }) {
            match segment(i + n + 1) {
                Some(s) => n += 1 + s,
                None => break,
            }
        }
        Some(n)
    }

    fn thing(&self, i: usize) -> Option<Match> {
        let t = self.thing_len(i)?;
        let (total, n) = self.dot_insentp(i, t).unwrap_or((t, t));
        Match::token(total, n, self.text(i, n))
    }

    /// `THINGA = [A-Z]+(([+&]|&amp;)[A-Z]+)+`: "AT&T".
    fn thinga(&self, i: usize) -> Option<Match> {
        let up = |c: char| c.is_ascii_uppercase();
        let mut n = self.run(i, up);
        if n == 0 {
            return None;
        }
        let mut groups = 0;
        loop {
            let join = match self.at(i + n) {
                Some('+') => 1,
                Some('&') => self.lit(i + n, "&amp;").unwrap_or(1),
                _ => break,
            };
            let l = self.run(i + n + join, up);
            if l == 0 {
                break;
            }
            n += join + l;
            groups += 1;
        }
        if groups == 0 {
            return None;
        }
        let (total, len) = self.dot_insentp(i, n).unwrap_or((n, n));
        Match::token(
            total,
            len,
            replace_caseless(&self.text(i, len), "&amp;", "&"),
        )
    }

    /// `'/[A-Za-z][^ \t\n\r\u00A0]`: an apostrophe before a word opens a quote.
    fn left_quote(&self, i: usize) -> Option<Match> {
        if self.at(i) == Some('\'')
            && self.is(i + 1, |c| c.is_ascii_alphabetic())
            && self.is(i + 2, |c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{a0}'))
        {
            Match::token(3, 1, "`".into())
        } else {
            None
        }
    }

    /// `{REDAUX}` and `{SREDAUX}` at the very end of the text.
    fn redaux_alone(&self, i: usize) -> Option<Match> {
        let n = self.redaux_len(i).or_else(|| self.sredaux_len(i))?;
        Match::token(n, n, latex_quotes(&self.text(i, n), false))
    }

    /// `QUOTES = {APOS}|''|[`\u2018...\u00BB]{1,2}`, normalised as closing.
    fn quotes(&self, i: usize) -> Option<Match> {
        let q = |c: char| {
            matches!(
                c,
                '`' | '\u{2018}'
                    | '\u{2019}'
                    | '\u{201a}'
                    | '\u{201b}'
                    | '\u{201c}'
                    | '\u{201d}'
                    | '\u{91}'
                    ..='\u{94}'
                        | '\u{201e}'
                        | '\u{201f}'
                        | '\u{2039}'
                        | '\u{203a}'
                        | '\u{ab}'
                        | '\u{bb}'
            )
        };
        let mut n = self.apos(i).unwrap_or(0);
        if self.lit(i, "''").is_some() {
            n = n.max(2);
        }
        n = n.max(self.run(i, q).min(2));
        if n == 0 {
            return None;
        }
        Match::token(n, n, latex_quotes(&self.text(i, n), false))
    }

    /// `MISCSYMBOL`: symbols that stand alone.
    fn misc(&self, i: usize) -> Option<Match> {
        const RANGES: &[(u32, u32)] = &[
            (0xA6, 0xA9),
            (0xAC, 0xAC),
            (0xAE, 0xAF),
            (0xB0, 0xBA),
            (0xD7, 0xD7),
            (0xF7, 0xF7),
            (0x387, 0x387),
            (0x5BE, 0x5BE),
            (0x5C0, 0x5C0),
            (0x5C3, 0x5C3),
            (0x5C6, 0x5C6),
            (0x5F3, 0x5F4),
            (0x600, 0x603),
            (0x606, 0x60A),
            (0x60C, 0x60C),
            (0x614, 0x614),
            (0x61B, 0x61B),
            (0x61E, 0x61E),
            (0x66A, 0x66A),
            (0x66D, 0x66D),
            (0x703, 0x70D),
            (0x7F6, 0x7F8),
            (0x964, 0x965),
            (0xE4F, 0xE4F),
            (0x1FBD, 0x1FBD),
            (0x2016, 0x2017),
            (0x2020, 0x2023),
            (0x2030, 0x2038),
            (0x203B, 0x203B),
            (0x203E, 0x2042),
            (0x2044, 0x2044),
            (0x207A, 0x207F),
            (0x208A, 0x208E),
            (0x2100, 0x214F),
            (0x2190, 0x21FF),
            (0x2200, 0x2BFF),
            (0x3012, 0x3012),
            (0x30FB, 0x30FB),
            (0xFF01, 0xFF0F),
            (0xFF1A, 0xFF20),
            (0xFF3B, 0xFF40),
            (0xFF5B, 0xFF65),
        ];
        let c = self.at(i)?;
        let u = c as u32;
        let hit = matches!(c, '+' | '%' | '&' | '~' | '^' | '|' | '\\')
            || RANGES.iter().any(|&(a, b)| (a..=b).contains(&u));
        if !hit {
            return None;
        }
        Match::token(1, 1, c.to_string())
    }

    /// Spaces, line breaks and invisible characters separate tokens; so does
    /// `&nbsp;`.
    fn space(&self, i: usize) -> Option<Match> {
        let c = self.at(i)?;
        if matches!(
            c,
            '\0' | '\u{7f}' | '\u{200b}' | '\u{200e}' | '\u{200f}' | '\u{feff}'
        ) || is_newline(c)
        {
            return Match::skip(1);
        }
        let n = self.run(i, is_space);
        if n > 0 {
            return Match::skip(n);
        }
        self.lit(i, "&nbsp;").and_then(Match::skip)
    }
}
