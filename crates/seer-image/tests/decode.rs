//! Decoder behaviour: formats, errors, EXIF orientation, robustness.

mod common;

use std::path::PathBuf;

use seer_image::{
    decode_bytes, decode_bytes_full, decode_file, DecodeLimits, ImageError, SourceMode,
};

fn sample_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![
        common::shared_data().join("smoke"),
        common::fixtures().join("inputs"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_format_decodes() {
    let limits = DecodeLimits::default();
    let smoke = common::shared_data().join("smoke/rclip-formats");
    for (file, mode) in [
        ("bee.jpg", SourceMode::Rgb),
        ("bee_animated.gif", SourceMode::Palette),
        ("boats on a lake.png", SourceMode::Rgb),
        ("chess-knight.tiff", SourceMode::Rgb),
        ("chess-pawns.bmp", SourceMode::Rgb),
        ("tree.webp", SourceMode::Rgb),
        ("kookaburras.pnm", SourceMode::Rgb),
        ("magpie.pbm", SourceMode::Bilevel),
        ("parrot-and-flowers.pgm", SourceMode::Gray),
        ("parrot-looks-into-the-camera.ppm", SourceMode::Rgb),
        // A JPEG with a .jp2 name: formats are sniffed from content, as PIL does.
        ("duck.jp2", SourceMode::Rgb),
    ] {
        let img = seer_image::decode_file_full(&smoke.join(file), &limits)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img.mode(), mode, "{file}");
        assert!(img.width() > 0 && img.height() > 0);
    }
    let inputs = common::fixtures().join("inputs");
    for (file, mode) in [
        ("cmyk.jpg", SourceMode::Cmyk),
        ("gray.jpg", SourceMode::Gray),
        ("progressive.jpg", SourceMode::Rgb),
        ("rgb16.png", SourceMode::Rgb),
        ("gray16.png", SourceMode::Gray),
        ("palette_trns.png", SourceMode::Palette),
        ("la.png", SourceMode::GrayAlpha),
        ("rgba_hidden.png", SourceMode::Rgba),
        ("bilevel.png", SourceMode::Bilevel),
        ("lossless.webp", SourceMode::Rgb),
    ] {
        let img = seer_image::decode_file_full(&inputs.join(file), &limits)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img.mode(), mode, "{file}");
    }
}

#[test]
fn rgb_conversion_semantics() {
    let limits = DecodeLimits::default();
    let inputs = common::fixtures().join("inputs");
    // Hidden green under alpha 0: convert("RGB") keeps it, compositing gives white.
    let img = seer_image::decode_file_full(&inputs.join("rgba_hidden.png"), &limits).unwrap();
    assert_eq!(img.to_rgb().get_pixel(0, 0).0, [0, 255, 0]);
    assert_eq!(img.composite_on_white().get_pixel(0, 0).0, [255, 255, 255]);
    // 16-bit: round(v / 257).
    let rgb16 = decode_file(&inputs.join("rgb16.png"), &limits).unwrap();
    let raw = std::fs::read(inputs.join("rgb16.png")).unwrap();
    let _ = raw; // the parity fixtures check every pixel; here just the shape
    assert_eq!(rgb16.dimensions(), (40, 30));
}

#[test]
fn exif_orientation_is_applied() {
    let limits = DecodeLimits::default();
    let inputs = common::fixtures().join("inputs");
    // Same scan data, different orientation tags (3 = 180°, 6 = 90° cw, 8 = 90° ccw).
    let img3 = decode_file(&inputs.join("exif_orientation_3.jpg"), &limits).unwrap();
    let img6 = decode_file(&inputs.join("exif_orientation_6.jpg"), &limits).unwrap();
    let img8 = decode_file(&inputs.join("exif_orientation_8.jpg"), &limits).unwrap();
    assert_eq!(img3.dimensions(), (120, 80));
    assert_eq!(img6.dimensions(), (80, 120));
    assert_eq!(img8.dimensions(), (80, 120));
    assert_eq!(seer_image::image::imageops::rotate90(&img6), img3);
    assert_eq!(seer_image::image::imageops::rotate180(&img6), img8);
    let png6 = decode_file(&inputs.join("exif_orientation_6.png"), &limits).unwrap();
    assert_eq!(png6.dimensions(), (80, 120), "PNG eXIf orientation");
}

fn assert_unsupported(
    r: Result<seer_image::image::RgbImage, ImageError>,
    name: &str,
    needle: &str,
) {
    match r {
        Err(e @ ImageError::UnsupportedFormat { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains(needle), "{msg}");
        }
        other => panic!("{name}: expected UnsupportedFormat, got {other:?}"),
    }
}

#[test]
fn error_paths() {
    let limits = DecodeLimits::default();
    let dir = std::env::temp_dir().join(format!("seer-image-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Zero-byte file and bytes.
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let e = decode_file(&empty, &limits).unwrap_err();
    assert!(
        matches!(e, ImageError::Empty { .. }) && e.to_string().contains("empty.jpg"),
        "{e}"
    );
    assert!(matches!(
        decode_bytes(b"", "<bytes>", &limits),
        Err(ImageError::Empty { .. })
    ));

    // Missing file.
    let e = decode_file(&dir.join("missing.png"), &limits).unwrap_err();
    assert!(
        matches!(e, ImageError::Io { .. }) && e.to_string().contains("missing.png"),
        "{e}"
    );

    // Text and JPEG 2000.
    let txt = common::shared_data().join("smoke/rclip-formats/not-an-image.txt");
    assert_unsupported(decode_file(&txt, &limits), "not-an-image.txt", "text");
    let jp2 = common::fixtures().join("inputs/real_jpeg2000.jp2");
    assert_unsupported(decode_file(&jp2, &limits), "real_jpeg2000.jp2", "JPEG 2000");

    // Arithmetic-coded JPEG (SOF9): PIL's libjpeg reads it, seer says so clearly.
    let mut arith =
        std::fs::read(common::shared_data().join("smoke/rclip-formats/bee.jpg")).unwrap();
    let sof = arith.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    arith[sof + 1] = 0xC9;
    assert_unsupported(
        decode_bytes(&arith, "arith.jpg", &limits),
        "arith.jpg",
        "arithmetic",
    );

    // Truncated files of every format PIL also refuses when truncated.
    for rel in [
        "smoke/rclip-formats/bee.jpg",
        "smoke/misc/red_apple.jpg",
        "smoke/skimage/coffee.png",
        "smoke/rclip-formats/tree.webp",
        "smoke/rclip-formats/chess-queen.gif",
    ] {
        let bytes = std::fs::read(common::shared_data().join(rel)).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 40, 20] {
            let r = decode_bytes(&bytes[..cut], rel, &limits);
            match r {
                Err(e) => assert!(e.to_string().contains(rel), "{e}"),
                Ok(_) => panic!("{rel} truncated to {cut} bytes decoded without error"),
            }
        }
    }

    // File size limit.
    let small = DecodeLimits {
        max_file_bytes: 100,
        ..limits
    };
    let e = decode_file(
        &common::shared_data().join("smoke/rclip-formats/bee.jpg"),
        &small,
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::FileTooLarge { .. }), "{e}");

    // Pixel budget on a real image.
    let tiny_budget = DecodeLimits {
        max_pixels: 1000,
        ..limits
    };
    for rel in [
        "smoke/rclip-formats/bee.jpg",
        "smoke/skimage/coffee.png",
        "smoke/rclip-formats/tree.webp",
        "smoke/rclip-formats/chess-queen.gif",
        "smoke/rclip-formats/chess-pawns.bmp",
    ] {
        let e = decode_file(&common::shared_data().join(rel), &tiny_budget).unwrap_err();
        assert!(matches!(e, ImageError::TooManyPixels { .. }), "{rel}: {e}");
        // The user's option, not the Rust field, and the file named once.
        let text = e.to_string();
        assert!(
            text.contains("--max-pixels") && !text.contains("::"),
            "{text}"
        );
        assert_eq!(text.matches(rel).count(), 1, "{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(data);
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    v.extend_from_slice(&crc32(&c).to_be_bytes());
    v
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let limits = DecodeLimits::default();
    // PNG claiming 100000 x 100000 RGB (30 GB) with a tiny IDAT.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", b""));
    let e = decode_bytes(&png, "<bytes>", &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("<bytes>") && e.to_string().contains("budget"),
        "{e}"
    );

    // GIF with a 65535 x 65535 logical screen.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    gif.extend_from_slice(&[
        0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 2, 2, 0x4c, 0x01, 0, 0x3b,
    ]);
    let e = decode_bytes(&gif, "<bytes>", &limits).unwrap_err();
    assert!(matches!(e, ImageError::TooManyPixels { .. }), "{e}");

    // JPEG whose SOF declares 65000 x 65000.
    let mut jpg = std::fs::read(common::shared_data().join("smoke/rclip-formats/bee.jpg")).unwrap();
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .unwrap();
    jpg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let e = decode_bytes(&jpg, "<bytes>", &limits).unwrap_err();
    assert!(matches!(e, ImageError::TooManyPixels { .. }), "{e}");

    // BMP header claiming 60000 x 60000.
    let mut bmp =
        std::fs::read(common::shared_data().join("smoke/rclip-formats/chess-pawns.bmp")).unwrap();
    bmp[18..22].copy_from_slice(&60_000i32.to_le_bytes());
    bmp[22..26].copy_from_slice(&60_000i32.to_le_bytes());
    let e = decode_bytes(&bmp, "<bytes>", &limits).unwrap_err();
    assert!(matches!(e, ImageError::TooManyPixels { .. }), "{e}");
}

/// Deterministic xorshift so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_and_corrupted_inputs_never_panic() {
    // A modest budget keeps corrupted headers from asking for huge buffers.
    let limits = DecodeLimits {
        max_pixels: 4_000_000,
        ..DecodeLimits::default()
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut err) = (0usize, 0usize);
    for path in sample_files() {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.display().to_string();
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for i in 0..12 {
            let cut = (bytes.len() as u64 * i / 12) as usize + (rng.next() % 7) as usize;
            variants.push(bytes[..cut.min(bytes.len())].to_vec());
        }
        for _ in 0..24 {
            let mut v = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                // Bias flips toward the header, where parsers are most fragile.
                let span = if rng.next().is_multiple_of(2) {
                    v.len().min(512)
                } else {
                    v.len()
                };
                let i = (rng.next() % span as u64) as usize;
                v[i] ^= 1 << (rng.next() % 8);
            }
            variants.push(v);
        }
        for v in variants {
            let r = std::panic::catch_unwind(|| decode_bytes_full(&v, &name, &limits).map(|_| ()));
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(_)) => err += 1,
                Err(_) => panic!("decoder panicked on a corrupted {name}"),
            }
        }
    }
    println!("fuzz: {ok} decoded, {err} rejected, 0 panics");
}

/// Binary junk is not "text": only plausible UTF-8 without control characters is.
#[test]
fn only_text_is_called_text() {
    let limits = DecodeLimits::default();
    let say = |bytes: &[u8]| match decode_bytes(bytes, "x.jpg", &limits) {
        Err(ImageError::UnsupportedFormat { detail, .. }) => detail,
        other => panic!("{other:?}"),
    };
    for junk in [
        vec![0xFFu8; 600],
        vec![0x80; 64],
        vec![0x00, 0x01, 0x02, 0x41, 0x42],
    ] {
        let detail = say(&junk);
        assert!(
            !detail.contains("text") && detail.contains("no known image signature"),
            "{junk:02x?}: {detail}"
        );
    }
    for text in [
        "hello, world\n".as_bytes(),
        "caf\u{e9} \u{2014} na\u{ef}ve\r\n".as_bytes(),
        // Cut inside a multi-byte character at the sniffing window's end.
        &"\u{e9}".repeat(300).into_bytes()[..513],
    ] {
        assert!(say(text).contains("looks like text"), "{:?}", &text[..8]);
    }
}

/// A video given where an image goes is called a video (the fixture videos'
/// own bytes), and a still-image HEIF/AVIF header is not.
#[test]
fn a_video_is_called_a_video() {
    let limits = DecodeLimits::default();
    let say = |bytes: &[u8]| match decode_bytes(bytes, "x.jpg", &limits) {
        Err(ImageError::UnsupportedFormat { detail, .. }) => detail,
        other => panic!("{other:?}"),
    };
    let videos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/video");
    for (name, kind) in [
        ("clip.mp4", "MP4/QuickTime"),
        ("rotated.mp4", "MP4/QuickTime"),
        ("colors.mkv", "Matroska/WebM"),
        ("clip.webm", "Matroska/WebM"),
    ] {
        let detail = say(&std::fs::read(videos.join(name)).unwrap());
        assert_eq!(detail, format!("a video ({kind}), not an image"), "{name}");
    }
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    assert!(
        say(heic).contains("no known image signature"),
        "{}",
        say(heic)
    );
}
