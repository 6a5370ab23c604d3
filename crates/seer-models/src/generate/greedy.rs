//! Greedy search: transformers' `_sample` with `do_sample=False`. Each row
//! takes the first maximum of its processed logits. Rows never influence each
//! other, so a row that emits EOS is done, and its decoder row is dropped
//! (transformers keeps computing it and pads the output).

use super::topk::argmax;
use super::{check_logits, Decoder, Plan};
use crate::error::Result;

pub(crate) fn run<D: Decoder>(
    decoder: &D,
    prompts: &[Vec<u32>],
    plan: &mut Plan,
) -> Result<Vec<Vec<u32>>> {
    let vocab = plan.vocab;
    let mut sequences: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut s = Vec::with_capacity(plan.max_length);
            s.extend_from_slice(p);
            s
        })
        .collect();
    // Decoder row r holds the prompt `live[r]`.
    let mut live: Vec<usize> = (0..prompts.len()).collect();
    let (mut state, mut logits) = decoder.start(prompts, &live)?;
    let mut keep = Vec::with_capacity(live.len());
    let mut tokens = Vec::with_capacity(live.len());
    let mut len = plan.prompt_len;
    loop {
        check_logits(&logits, live.len(), vocab)?;
        keep.clear();
        tokens.clear();
        for (r, &input) in live.iter().enumerate() {
            let scores = &mut logits[r * vocab..(r + 1) * vocab];
            plan.processors.apply(&sequences[input], scores);
            let token = argmax(scores) as u32;
            sequences[input].push(token);
            if !plan.is_eos(token) {
                keep.push(r);
                tokens.push(token);
            }
        }
        len += 1;
        if len >= plan.max_length || keep.is_empty() {
            return Ok(sequences);
        }
        if keep.len() < live.len() {
            decoder.select_rows(&mut state, &keep)?;
            live = keep.iter().map(|&r| live[r]).collect();
        }
        logits = decoder.step(&mut state, &tokens)?;
    }
}
