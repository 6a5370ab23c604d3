//! Seeded mutation fuzzing of the image decoders, the way `seer embed` runs
//! them: [`crate::decode_bytes_full`] with the default [`DecodeLimits`]
//! (pixel budget, shared [`crate::DecodeBudget`]), then the CLIP
//! resize-and-crop. Each mutated input runs under `catch_unwind`; panics,
//! inputs slower than [`SLOW`] and single allocations over [`BIG_ALLOC`]
//! are saved under `/tmp/fuzz-data/image/` (`current.bin` is the input in
//! flight, left behind by a hang or abort).
//!
//! Run (about 2-3 minutes in release on one core):
//!
//! ```text
//! cargo test --release -q -p seer-image -- --ignored fuzz_
//! ```
//!
//! Seeds: the small files of the shared `smoke/` data, plus any files in
//! `/tmp/fuzz-data/seeds/image/`: tiny variants (progressive, CMYK, 4:2:2
//! JPEG; palette, 16-bit, tRNS, APNG PNG; animated GIF; lossy, lossless,
//! alpha, animated WebP; BMP 1/8/24-bit; TIFF raw/LZW/deflate/16-bit; PNM
//! binary and ASCII) are made with PIL, e.g.
//! `im.save("prog.jpg", progressive=True)`, `im.convert("CMYK").save(...)`,
//! `im.save("anim.png", save_all=True, append_images=[...])`. Without them
//! the harness still runs on the shared files.
#![cfg(test)]

use crate::{decode_bytes_full, resize_and_crop_decoded, DecodeLimits, PreprocessConfig};

use seer_testkit::fuzz_mutator::*;

/// Fixed so a finding replays: change it to explore further.
const SEED: u64 = 0x5EE5_1A6E;
/// About 3 minutes in release on a shared 2-core machine.
const ITERATIONS: usize = 50_000;

/// Format-aware header mutations on top of the generic ones.
fn mutate_header(buf: &mut [u8], rng: &mut Rng) {
    let len = buf.len();
    // Image dimensions, whatever the format: the seeds are all 1..=4096 wide,
    // so replace a likely width/height field with 0, 65535, 2^31, ...
    if buf.starts_with(b"\x89PNG") && len > 24 {
        let at = [16, 20][rng.below(2)];
        put_int(buf, at, 4, interesting_u32(rng), true);
        // Or a chunk length.
        let mut p = 8;
        let mut chunks = Vec::new();
        while p + 8 <= len {
            chunks.push(p);
            let n = u32::from_be_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]) as usize;
            p = p.saturating_add(12).saturating_add(n);
        }
        if !chunks.is_empty() && rng.chance(2) {
            let at = chunks[rng.below(chunks.len())];
            put_int(buf, at, 4, interesting_u32(rng), true);
        }
    } else if buf.starts_with(&[0xFF, 0xD8]) {
        // SOFn height/width, or a segment length.
        let sofs: Vec<usize> = (0..len.saturating_sub(9))
            .filter(|&i| buf[i] == 0xFF && matches!(buf[i + 1], 0xC0..=0xC3 | 0xDA | 0xC4 | 0xDB))
            .collect();
        if let Some(&i) = sofs.get(rng.below(sofs.len().max(1))) {
            let at = match rng.below(4) {
                0 => i + 2, // segment length
                1 => i + 5, // SOF height
                2 => i + 7, // SOF width
                _ => i + 9, // component count / scan components
            };
            if rng.chance(2) {
                put_int(buf, at, 2, interesting_u32(rng), true);
            } else if at < len {
                buf[at] = [0, 1, 2, 3, 4, 0xFF][rng.below(6)];
            }
        }
    } else if buf.starts_with(b"GIF") && len > 10 {
        put_int(buf, [6, 8][rng.below(2)], 2, interesting_u32(rng), false);
    } else if buf.starts_with(b"BM") && len > 30 {
        let at = [2, 10, 14, 18, 22, 28, 30, 46][rng.below(8)];
        put_int(buf, at, [2, 4][rng.below(2)], interesting_u32(rng), false);
    }
    mutate_exif(buf, rng);
}

/// EXIF (TIFF-structured) mutations: IFD offsets and entry counts pointing out
/// of range or back at themselves, and orientation values.
fn mutate_exif(buf: &mut [u8], rng: &mut Rng) {
    let Some(t) = buf.windows(4).position(|w| w == b"II*\0" || w == b"MM\0*") else {
        return;
    };
    let big = buf[t] == b'M';
    let rd32 = |b: &[u8], at: usize| {
        b.get(at..at + 4).map(|s| {
            let a = [s[0], s[1], s[2], s[3]];
            if big {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        })
    };
    let ifd0 = rd32(buf, t + 4).unwrap_or(8) as usize;
    match rng.below(5) {
        // IFD0 offset: out of range, to itself (a loop), or to the header.
        0 => {
            let v = [interesting_u32(rng), 0, 4, ifd0 as u32][rng.below(4)];
            put_int(buf, t + 4, 4, v, big);
        }
        // IFD0 entry count.
        1 => put_int(buf, t + ifd0, 2, interesting_u32(rng), big),
        // The next-IFD offset after IFD0 points back at IFD0 (a loop).
        2 => {
            let n = buf
                .get(t + ifd0..t + ifd0 + 2)
                .map(|s| {
                    if big {
                        u16::from_be_bytes([s[0], s[1]])
                    } else {
                        u16::from_le_bytes([s[0], s[1]])
                    }
                })
                .unwrap_or(0) as usize;
            put_int(buf, t + ifd0 + 2 + 12 * n, 4, ifd0 as u32, big);
        }
        // An entry's count / value offset (entries are 12 bytes).
        3 => {
            let e = t + ifd0 + 2 + 12 * rng.below(4);
            let at = e + [2, 4, 8][rng.below(3)];
            put_int(buf, at, [2, 4][rng.below(2)], interesting_u32(rng), big);
        }
        // Orientation (tag 0x0112) to 0..=9 or 0xFFFF.
        _ => {
            let tag = if big { [0x01, 0x12] } else { [0x12, 0x01] };
            if let Some(p) = buf[t..].windows(2).position(|w| w == tag) {
                let v = [0, 1, 3, 5, 6, 8, 9, 0xFFFF][rng.below(8)];
                put_int(buf, t + p + 8, 2, v, big);
            }
        }
    }
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let shared = seer_testkit::shared_data();
    let dirs = [
        shared.join("smoke/rclip-formats"),
        shared.join("smoke/misc"),
        shared.join("smoke/segment-anything"),
        std::env::temp_dir().join("fuzz-data/seeds/image"),
    ];
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let dirs: Vec<&str> = dirs.iter().map(|s| s.as_str()).collect();
    // Big seeds make each decode slow without reaching more header code.
    read_seeds(&dirs, 64 << 10)
}

#[test]
#[ignore = "fuzz harness, ~3 minutes: cargo test --release -p seer-image -- --ignored fuzz_"]
fn fuzz_image_decode() {
    let seeds = seeds();
    assert!(!seeds.is_empty(), "no seeds");
    let limits = DecodeLimits::default();
    let cfg = PreprocessConfig::openai_clip(32);
    let mut rng = Rng::new(SEED);
    let mut found = Findings::new("image");
    // A header declaring up to the pixel budget (178M pixels) is decoded in
    // full, as PIL does, filling missing data: ~1 s per 25M pixels here. The
    // budget bounds that; only slower inputs are findings.
    found.slow_after = std::time::Duration::from_secs(4);
    quiet_panics(|| {
        for iter in 0..ITERATIONS {
            let (_, seed) = &seeds[rng.below(seeds.len())];
            let (_, other) = &seeds[rng.below(seeds.len())];
            let mut input = seed.clone();
            if rng.chance(3) {
                mutate_header(&mut input, &mut rng);
            }
            for _ in 0..1 + rng.below(4) {
                mutate_once(&mut input, other, &mut rng);
            }
            let name = format!("fuzz-{iter}.img");
            found.run(iter, &input, || {
                match decode_bytes_full(&input, &name, &limits) {
                    Ok(img) => {
                        let _ = resize_and_crop_decoded(&img, &cfg);
                        Ok(())
                    }
                    Err(e) => {
                        // The rule: every error names its input.
                        assert!(
                            e.to_string().contains(&name),
                            "error without the file name: {e}"
                        );
                        Err(e)
                    }
                }
            });
        }
    });
    found.finish("image", ITERATIONS);
}
