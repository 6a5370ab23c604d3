//! The logits processors greedy and beam search run, in the order
//! transformers' `_get_logits_processor` builds them: repetition penalty,
//! no-repeat n-grams, minimum length, minimum new tokens. Greedy search
//! applies them to the raw logits, beam search to the log-softmax.
//!
//! Every operation is the f32 arithmetic torch does, so the same scores come
//! out bit for bit.

/// One row's processors, built once per [`super::generate`] call.
pub(crate) struct Processors {
    /// Already rounded to f32, as torch rounds the Python float.
    repetition_penalty: Option<f32>,
    no_repeat_ngram_size: usize,
    /// EOS is banned while the row is shorter; 0 when no EOS is set (transformers
    /// only adds the processors then).
    min_length: usize,
    eos: Vec<u32>,
    /// Distinct history tokens, reused between rows.
    seen: Vec<u32>,
}

impl Processors {
    pub(crate) fn new(
        repetition_penalty: f64,
        no_repeat_ngram_size: usize,
        min_length: usize,
        eos: &[u32],
    ) -> Self {
        Self {
            // transformers skips the processor at exactly 1.0.
            repetition_penalty: (repetition_penalty != 1.0).then_some(repetition_penalty as f32),
            no_repeat_ngram_size,
            min_length: if eos.is_empty() { 0 } else { min_length },
            eos: eos.to_vec(),
            seen: Vec::new(),
        }
    }

    /// Processes the scores of the row whose tokens so far are `history`
    /// (prompt included).
    pub(crate) fn apply(&mut self, history: &[u32], scores: &mut [f32]) {
        if let Some(penalty) = self.repetition_penalty {
            self.repetition(history, scores, penalty);
        }
        if self.no_repeat_ngram_size > 0 {
            ban_repeated_ngrams(history, self.no_repeat_ngram_size, scores);
        }
        // MinLengthLogitsProcessor and MinNewTokensLengthLogitsProcessor: both
        // ban EOS below the same length once min_new_tokens has set min_length.
        if history.len() < self.min_length {
            for &t in &self.eos {
                if let Some(s) = scores.get_mut(t as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// RepetitionPenaltyLogitsProcessor: every distinct earlier token's score
    /// is multiplied by the penalty when negative, else divided by it; once per
    /// token however often it occurs (gather, then scatter). Ids outside the
    /// vocabulary are skipped, as transformers clamps them into a dropped column.
    fn repetition(&mut self, history: &[u32], scores: &mut [f32], penalty: f32) {
        self.seen.clear();
        self.seen.extend_from_slice(history);
        self.seen.sort_unstable();
        self.seen.dedup();
        for &t in &self.seen {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
            }
        }
    }
}

/// NoRepeatNGramLogitsProcessor: every earlier n-gram whose first n-1 tokens
/// are the row's last n-1 tokens bans its last token.
fn ban_repeated_ngrams(history: &[u32], n: usize, scores: &mut [f32]) {
    let len = history.len();
    if len < n {
        return;
    }
    let prefix = &history[len + 1 - n..];
    for window in history.windows(n) {
        if &window[..n - 1] == prefix {
            if let Some(s) = scores.get_mut(window[n - 1] as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// torch's `log_softmax` over one row, in place: `(x - max) - log(sum(exp(x - max)))`
/// in f32. torch sums its own vectorised `exp` in f32, which lands within a
/// few ulps of the exact sum; here the sum is taken in f64 and its log rounded
/// once to f32. The shift is one constant per row, so the order within a row is
/// torch's exactly; across rows scores can differ in the last bit.
pub(crate) fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, |m, x| {
        if x.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(x)
        }
    });
    let mut sum = 0.0f64;
    for x in row.iter_mut() {
        *x -= max;
        sum += f64::from(*x).exp();
    }
    let log_sum = sum.ln() as f32;
    for x in row.iter_mut() {
        *x -= log_sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngrams_ban_the_continuations_seen_before() {
        let mut s = vec![0.0f32; 6];
        // 2-grams ending a [1, 2, 1]: the prefix [1] was followed by 2 → ban 2.
        ban_repeated_ngrams(&[1, 2, 1], 2, &mut s);
        assert_eq!(s, [0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0]);
        let mut s = vec![0.0f32; 6];
        // n = 1 bans every token seen; out-of-vocabulary ids are skipped.
        ban_repeated_ngrams(&[3, 5, 9], 1, &mut s);
        assert_eq!(s[3], f32::NEG_INFINITY);
        assert_eq!(s[5], f32::NEG_INFINITY);
        assert_eq!(s[4], 0.0);
    }

    #[test]
    fn repetition_penalty_applies_once_per_token() {
        let mut p = Processors::new(2.0, 0, 0, &[]);
        let mut s = vec![4.0f32, -4.0, 4.0];
        p.apply(&[0, 0, 1, 7], &mut s);
        assert_eq!(s, [2.0, -8.0, 4.0]);
    }

    #[test]
    fn log_softmax_normalises() {
        let mut row = vec![1.0f32, 2.0, 3.0];
        log_softmax(&mut row);
        let total: f64 = row.iter().map(|&x| f64::from(x).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);
    }
}
