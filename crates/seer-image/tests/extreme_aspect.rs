//! Valid images of extreme aspect ratio (1 × N and N × 1) through every
//! preprocessor. Their intermediate images used to be derived from the aspect
//! ratio and allocated whole: a 1 × 20,000,000 PNG (78 KB) resized for CLIP
//! to 224 × 4,480,000,000 (3 TB, the process aborted), OWLv2 filtered every
//! column of its 20,000,000-pixel padded square (tens of GB, or minutes of
//! CPU at 1 × 200,000). Every preprocessor now computes only what its output
//! reads, in time and memory bounded by the source and the output, so these
//! images preprocess (to the pixels the references would compute, see the
//! unit tests against the whole-image algorithms) in well under a second.

use std::time::Instant;

use seer_image::image::{Rgb, RgbImage};
use seer_image::{
    decode_bytes_full, preprocess_decoded, preprocess_exact, preprocess_exact_rgb,
    preprocess_naflex, preprocess_naflex_rgb, preprocess_sam, resize_and_crop, CropRounding,
    DecodeLimits, DecodedImage, ExactResizeConfig, Interpolation, NaflexConfig, OwlProcessor,
    PreprocessConfig, RgbConversion, SamProcessorConfig,
};

/// `f()`, its time printed (`--nocapture`): no limit is asserted, since
/// times depend on the machine; the old code aborted here (allocations of
/// gigabytes), which fails the test by itself.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    println!("{what}: {:?}", t.elapsed());
    out
}

/// A `w × h` PNG, colour varying along the long side.
fn png(w: u32, h: u32, color: png::ColorType) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let n = w as usize * h as usize;
    let data: Vec<u8> = match color {
        png::ColorType::Indexed => {
            let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
            enc.set_palette(palette);
            (0..n).map(|i| (i / 1000 % 256) as u8).collect()
        }
        png::ColorType::Rgba => (0..n)
            .flat_map(|i| [(i / 997) as u8, 40, 200, (i / 1000 % 256) as u8])
            .collect(),
        _ => (0..n).flat_map(|i| [(i / 1000) as u8, 128, 77]).collect(),
    };
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    bytes
}

fn decoded(w: u32, h: u32, color: png::ColorType) -> DecodedImage {
    decode_bytes_full(&png(w, h, color), "thin.png", &DecodeLimits::default()).unwrap()
}

fn rgb(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let i = x.max(y);
        Rgb([(i / 1000) as u8, 128, (i / 7) as u8])
    })
}

fn clip_configs() -> Vec<(&'static str, PreprocessConfig)> {
    let open_clip = PreprocessConfig::openai_clip(224);
    let mut hf = open_clip.clone();
    hf.crop_rounding = CropRounding::Floor;
    hf.rgb_conversion = RgbConversion::CompositeOnWhite;
    // DINOv2 (BitImageProcessor): shortest edge 256, crop 224.
    let mut dinov2 = hf.clone();
    dinov2.resize_to = 256;
    let mut bilinear = open_clip.clone();
    bilinear.interpolation = Interpolation::Bilinear;
    bilinear.crop_size = 300; // larger than the short side: padded
    vec![
        ("open_clip", open_clip),
        ("transformers", hf),
        ("dinov2", dinov2),
        ("bilinear+pad", bilinear),
    ]
}

fn assert_finite(what: &str, v: &[f32]) {
    assert!(v.iter().all(|x| x.is_finite()), "{what}: non-finite values");
}

/// Shapes whose old intermediates were absurd: 224 × 448,000,000 (300 GB) for
/// CLIP at 1 × 2,000,000, 1,920 × 2,000,000 floats × 3 (46 GB) for OWLv2.
const N: u32 = 2_000_000;

#[test]
fn clip_style_shortest_edge_and_crop() {
    for (w, h) in [(1, N), (N, 1)] {
        for color in [
            png::ColorType::Rgb,
            png::ColorType::Indexed, // open_clip resizes it with NEAREST
            png::ColorType::Rgba,    // open_clip: premultiplied; transformers: on white
        ] {
            let img = decoded(w, h, color);
            for (name, cfg) in clip_configs() {
                let what = format!("{name} {w}x{h} {color:?}");
                let out = timed(&what, || preprocess_decoded(&img, &cfg));
                let crop = cfg.crop_size as usize;
                assert_eq!(out.len(), 3 * crop * crop, "{what}");
                assert_finite(&what, &out);
            }
        }
    }
}

#[test]
fn clip_style_at_twenty_million() {
    // The tester's file: 1 × 20,000,000 (and its transpose), in memory.
    for (w, h) in [(1, 20_000_000), (20_000_000, 1)] {
        let img = rgb(w, h);
        for (name, cfg) in clip_configs() {
            let out = timed(&format!("{name} {w}x{h}"), || resize_and_crop(&img, &cfg));
            assert_eq!(out.dimensions(), (cfg.crop_size, cfg.crop_size));
            // Across the thin side the source is one pixel: every resized row
            // (tall) or column (wide) of the crop is constant where it is not
            // padding.
            let c = cfg.crop_size;
            let inside = |x: u32, y: u32| {
                let v = if w == 1 { x } else { y };
                let pad = c.saturating_sub(cfg.resize_to) / 2;
                v >= pad && v < pad + cfg.resize_to.min(c)
            };
            for y in 0..c {
                for x in 0..c {
                    if !inside(x, y) {
                        continue;
                    }
                    let (rx, ry) = if w == 1 { (c / 2, y) } else { (x, c / 2) };
                    assert_eq!(out.get_pixel(x, y), out.get_pixel(rx, ry), "{name} {x},{y}");
                }
            }
        }
    }
}

#[test]
fn squash_resizes_siglip_blip_owlvit() {
    let siglip = ExactResizeConfig::from_siglip_preprocessor_config("{}").unwrap();
    let blip = ExactResizeConfig::from_blip_preprocessor_config("{}").unwrap();
    let owlvit = match OwlProcessor::from_config("{}", false).unwrap() {
        OwlProcessor::Squash(c) => c,
        other => panic!("{other:?}"),
    };
    for (w, h) in [(1, N), (N, 1)] {
        let img = decoded(w, h, png::ColorType::Rgb);
        for (name, cfg) in [("siglip", &siglip), ("blip", &blip), ("owl-vit", &owlvit)] {
            let what = format!("{name} {w}x{h}");
            let out = timed(&what, || preprocess_exact(&img, cfg));
            assert_eq!(out.len(), 3 * (cfg.width * cfg.height) as usize, "{what}");
            assert_finite(&what, &out);
        }
    }
    for (w, h) in [(1, 20_000_000), (20_000_000, 1)] {
        let img = rgb(w, h);
        let out = timed(&format!("siglip {w}x{h}"), || {
            preprocess_exact_rgb(&img, &siglip)
        });
        assert_eq!(out.len(), 3 * 224 * 224);
    }
}

#[test]
fn siglip2_naflex() {
    let cfg = NaflexConfig::from_siglip2_preprocessor_config("{}").unwrap();
    for (w, h) in [(1, N), (N, 1)] {
        let img = decoded(w, h, png::ColorType::Rgb);
        let p = timed(&format!("naflex {w}x{h}"), || preprocess_naflex(&img, &cfg));
        // One patch across the thin side, the rest of the budget along the long one.
        let (rows, cols) = if w == 1 { (256, 1) } else { (1, 256) };
        assert_eq!((p.rows, p.cols), (rows, cols), "{w}x{h}");
        assert_finite("naflex", &p.patches);
    }
    for (w, h) in [(1, 20_000_000), (20_000_000, 1)] {
        let img = rgb(w, h);
        let p = timed(&format!("naflex {w}x{h}"), || {
            preprocess_naflex_rgb(&img, &cfg)
        });
        // The binary search for the scale stops just short of 256 here, as
        // transformers' does (1e-5 apart).
        assert_eq!(p.rows.min(p.cols), 1, "{w}x{h}");
        assert!(
            (250..=256).contains(&(p.rows * p.cols)),
            "{w}x{h}: {}x{}",
            p.rows,
            p.cols
        );
        assert_finite("naflex", &p.patches);
    }
}

#[test]
fn sam_longest_edge_never_collapses_to_zero() {
    // transformers' `_get_preprocess_shape` rounds 1024 / 20,000 to 0 (PIL
    // then refuses the resize); seer keeps at least one pixel.
    let cfg = SamProcessorConfig::default();
    assert_eq!(cfg.resized_size(1, 20_000), (1, 1024));
    assert_eq!(cfg.resized_size(20_000, 1), (1024, 1));
    for (w, h) in [(1, N), (N, 1), (20_000, 1), (1, 3)] {
        let img = decoded(w, h, png::ColorType::Rgb);
        let p = timed(&format!("sam {w}x{h}"), || preprocess_sam(&img, &cfg));
        assert_eq!(p.pixels.len(), 3 * 1024 * 1024);
        assert_eq!(p.original, (h, w));
        let (rh, rw) = p.resized;
        assert!(
            rh >= 1 && rw >= 1 && rh.max(rw) == 1024,
            "{w}x{h}: {:?}",
            p.resized
        );
        assert_finite("sam", &p.pixels);
    }
}

#[test]
fn owlv2_pad_and_gaussian() {
    for json in ["{}", r#"{"size": {"height": 96, "width": 96}}"#] {
        let owl = OwlProcessor::from_config(json, true).unwrap();
        let (ow, oh) = owl.size();
        for (w, h) in [(1, N), (N, 1)] {
            let img = decoded(w, h, png::ColorType::Rgb);
            let what = format!("owlv2 {ow} {w}x{h}");
            let out = timed(&what, || owl.preprocess(&img));
            assert_eq!(out.len(), 3 * (ow * oh) as usize, "{what}");
            assert_finite(&what, &out);
            // Everything beyond the image's own strip is padding: after
            // normalisation, (0 - mean) / std.
            let OwlProcessor::PadResize(c) = &owl else {
                unreachable!()
            };
            let pad = (0.0 - c.mean[0]) / c.std[0];
            let far = if w == 1 {
                out[(oh as usize / 2) * ow as usize + ow as usize - 1]
            } else {
                out[(oh as usize - 1) * ow as usize + ow as usize / 2]
            };
            assert_eq!(far, pad, "{what}");
        }
    }
}
