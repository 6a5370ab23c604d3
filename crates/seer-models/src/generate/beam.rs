//! Beam search: transformers' `_beam_search` (the vectorised version of
//! transformers ≥ 4.50) for one input at a time, all inputs' beams batched
//! through the decoder.
//!
//! Each step, per input: the top `K = max(2, 1 + #EOS) * num_beams`
//! continuations over all beams (`_get_top_k_continuations`); the best
//! `num_beams` that hit no stopping criterion run on
//! (`_get_running_beams_for_next_iteration`); those among the first
//! `num_beams` that did are scored with the length penalty and merged into the
//! `num_beams` finished slots (`_update_finished_beams`); then the
//! early-stopping heuristic (`_check_early_stop_heuristic`). The `-1e9` masks
//! are added in f32 as torch adds them, because their rounding decides ties.
//!
//! transformers runs every input until all are done. An input whose finished
//! slots can no longer change (its heuristic is satisfied, or with
//! `early_stopping=true` all its slots are finished) is frozen there: every
//! later candidate gets a `-1e9` mask. So its rows are dropped here instead,
//! which changes no result.

use super::processors::log_softmax;
use super::topk::topk_by;
use super::{check_logits, invalid, Decoder, EarlyStopping, Plan};
use crate::error::Result;

/// transformers' mask and "no score yet" value.
const NEG: f32 = -1.0e9;

/// One of an input's `num_beams` finished-hypothesis slots (`sequences`,
/// `beam_scores`, `is_sent_finished` in transformers).
#[derive(Clone)]
struct Slot {
    score: f32,
    finished: bool,
    /// Prompt and generated tokens.
    sequence: Vec<u32>,
}

struct Input {
    slots: Vec<Slot>,
    /// `is_early_stop_heuristic_unsatisfied`: the slots may still improve.
    improvable: bool,
}

/// One of the top-K continuations of an input.
#[derive(Clone, Copy)]
struct Candidate {
    score: f32,
    /// Decoder row of the beam it extends.
    row: usize,
    token: u32,
    /// It ends here: an EOS token, or the length limit.
    hit: bool,
}

/// `base ^ exponent` as Python computes `int ** float`, rounded to f32 as torch
/// rounds a Python float divisor.
fn penalty_divisor(length: usize, exponent: f64) -> f32 {
    (length as f64).powf(exponent) as f32
}

pub(crate) fn run<D: Decoder>(
    decoder: &D,
    prompts: &[Vec<u32>],
    plan: &mut Plan,
) -> Result<Vec<Vec<u32>>> {
    let (vocab, beams) = (plan.vocab, plan.num_beams);
    let keep = 2.max(1 + plan.eos.len()) * beams;
    if keep > beams * vocab {
        return Err(invalid(format!(
            "beam search with {beams} beams and {} EOS ids keeps {keep} candidates a step, \
             more than the {} there are (vocabulary {vocab})",
            plan.eos.len(),
            beams * vocab
        )));
    }
    let mut inputs: Vec<Input> = prompts
        .iter()
        .map(|p| Input {
            slots: vec![
                Slot {
                    score: NEG,
                    finished: false,
                    sequence: p.clone(),
                };
                beams
            ],
            improvable: true,
        })
        .collect();

    // Decoder rows: `active[i]`'s beams are rows i*width .. (i+1)*width. The
    // first step has one row per input (its beams are still identical).
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let (mut state, mut logits) = decoder.start(prompts, &active)?;
    let mut width = 1;
    let mut history: Vec<Vec<u32>> = prompts.to_vec();
    let mut running: Vec<f32> = vec![0.0; prompts.len()];

    // Buffers reused across steps.
    let mut next_history: Vec<Vec<u32>> = Vec::new();
    let mut next_running: Vec<f32> = Vec::new();
    let mut parents: Vec<usize> = Vec::new();
    let mut tokens: Vec<u32> = Vec::new();
    let mut next_active: Vec<usize> = Vec::new();
    let mut scratch = Vec::new();
    let mut top = Vec::new();
    let mut picked = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(keep);
    let mut masked: Vec<f32> = Vec::with_capacity(keep);
    let mut merged: Vec<f32> = Vec::with_capacity(beams + keep);
    let mut next_slots: Vec<Slot> = Vec::with_capacity(beams);
    let mut chosen: Vec<Candidate> = Vec::with_capacity(beams);

    let mut len = plan.prompt_len;
    loop {
        let rows = active.len() * width;
        check_logits(&logits, rows, vocab)?;
        for (r, scores) in logits.chunks_exact_mut(vocab).enumerate() {
            log_softmax(scores);
            plan.processors.apply(&history[r], scores);
        }
        let ends_here = len + 1 >= plan.max_length;
        let new_tokens = len + 1 - plan.prompt_len;
        let divisor = penalty_divisor(new_tokens, plan.length_penalty);

        parents.clear();
        tokens.clear();
        next_running.clear();
        next_active.clear();
        for (i, &input) in active.iter().enumerate() {
            let base = i * width;
            // Accumulated scores over `beams × vocab`. On the first step beam 0
            // scores 0 and the copies -1e9, so that only beam 0 is explored.
            let value = |index: usize| {
                let (beam, token) = (index / vocab, index % vocab);
                if width == 1 {
                    let prior = if beam == 0 { 0.0 } else { NEG };
                    logits[base * vocab + token] + prior
                } else {
                    logits[(base + beam) * vocab + token] + running[base + beam]
                }
            };
            topk_by(beams * vocab, keep, value, &mut scratch, &mut top);
            candidates.clear();
            for &(score, index) in &top {
                let (beam, token) = (index / vocab, (index % vocab) as u32);
                candidates.push(Candidate {
                    score,
                    row: base + if width == 1 { 0 } else { beam },
                    token,
                    hit: ends_here || plan.is_eos(token),
                });
            }

            // The beams that run on: the best that did not just end.
            masked.clear();
            masked.extend(
                candidates
                    .iter()
                    .map(|c| if c.hit { c.score + NEG } else { c.score }),
            );
            topk_by(keep, beams, |c| masked[c], &mut scratch, &mut picked);
            chosen.clear();
            chosen.extend(picked.iter().map(|&(score, c)| Candidate {
                score,
                ..candidates[c]
            }));

            // Finished slots: keep the best of the old slots and the new
            // finished hypotheses among the first `beams` candidates. (transformers
            // also masks every candidate of a frozen input; those are not run here.)
            let item = &mut inputs[input];
            merged.clear();
            merged.extend(item.slots.iter().map(|s| s.score));
            merged.extend(candidates.iter().enumerate().map(|(c, cand)| {
                let s = cand.score / divisor;
                if cand.hit && c < beams {
                    s
                } else {
                    s + NEG
                }
            }));
            topk_by(
                beams + keep,
                beams,
                |m| merged[m],
                &mut scratch,
                &mut picked,
            );
            next_slots.resize_with(beams, || Slot {
                score: NEG,
                finished: false,
                sequence: Vec::new(),
            });
            for (slot, &(score, m)) in next_slots.iter_mut().zip(&picked) {
                slot.score = score;
                if m < beams {
                    let old = &item.slots[m];
                    slot.finished = old.finished;
                    slot.sequence.clone_from(&old.sequence);
                } else {
                    let c = m - beams;
                    let cand = &candidates[c];
                    slot.finished = cand.hit && c < beams;
                    slot.sequence.clone_from(&history[cand.row]);
                    slot.sequence.push(cand.token);
                }
            }
            std::mem::swap(&mut item.slots, &mut next_slots);

            // Can the slots still improve? Judged at the new length.
            let hypothetical =
                if plan.early_stopping == EarlyStopping::Never && plan.length_penalty > 0.0 {
                    plan.max_length - plan.prompt_len
                } else {
                    new_tokens
                };
            let best = chosen[0].score / penalty_divisor(hypothetical, plan.length_penalty);
            let worst = item
                .slots
                .iter()
                .map(|s| s.score)
                .fold(f32::INFINITY, |m, s| {
                    if m.is_nan() || s.is_nan() {
                        f32::NAN
                    } else {
                        m.min(s)
                    }
                });
            item.improvable &= item
                .slots
                .iter()
                .any(|s| best > if s.finished { worst } else { NEG });
            let frozen = !item.improvable
                || (plan.early_stopping == EarlyStopping::True
                    && item.slots.iter().all(|s| s.finished));
            if !frozen {
                next_active.push(input);
                for cand in &chosen {
                    parents.push(cand.row);
                    tokens.push(cand.token);
                    next_running.push(cand.score);
                }
            }
        }
        len += 1;
        if ends_here || next_active.is_empty() {
            break;
        }

        // The surviving beams become the decoder's rows.
        next_history.resize_with(next_history.len().max(parents.len()), Vec::new);
        for ((next, &parent), &token) in next_history.iter_mut().zip(&parents).zip(&tokens) {
            next.clone_from(&history[parent]);
            next.push(token);
        }
        // Rows past `parents.len()` are stale buffers kept for reuse.
        std::mem::swap(&mut history, &mut next_history);
        std::mem::swap(&mut running, &mut next_running);
        std::mem::swap(&mut active, &mut next_active);
        width = beams;
        decoder.select_rows(&mut state, &parents)?;
        logits = decoder.step(&mut state, &tokens)?;
    }
    Ok(inputs
        .into_iter()
        .map(|mut input| std::mem::take(&mut input.slots[0].sequence))
        .collect())
}
