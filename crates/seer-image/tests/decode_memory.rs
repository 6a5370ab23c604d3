//! Decoding on several threads stays within the shared decode budget, measured
//! by the budget's high-water mark, and an image larger than the whole budget
//! still decodes (alone).

use std::io::Cursor;

use seer_image::image::{ImageFormat, Rgb, RgbImage};
use seer_image::{decode_bytes_full, DecodeBudget, DecodeLimits, RESERVED_BYTES_PER_PIXEL};

/// A large but highly compressible PNG: small on disk, big once decoded.
fn solid_png(side: u32) -> Vec<u8> {
    let img = RgbImage::from_pixel(side, side, Rgb([40, 120, 200]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn parallel_decodes_share_one_budget() {
    const SIDE: u32 = 4000;
    let png = solid_png(SIDE);
    assert!(
        png.len() < 1 << 20,
        "the test image should be small on disk"
    );
    let per_image = (SIDE as u64).pow(2) * RESERVED_BYTES_PER_PIXEL;
    // Room for two images at once, while six decode on four threads.
    let budget: &'static DecodeBudget =
        Box::leak(Box::new(DecodeBudget::new(2 * per_image + per_image / 2)));
    let limits = DecodeLimits {
        memory: budget,
        ..DecodeLimits::default()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let png = &png;
                s.spawn(move || {
                    for i in (t..6).step_by(4) {
                        let img = decode_bytes_full(png, &format!("big-{i}.png"), &limits)
                            .expect("decodes");
                        assert_eq!((img.width(), img.height()), (SIDE, SIDE));
                        // Held while the image lives, released when it is dropped.
                        assert!(budget.in_use() >= per_image);
                        drop(img);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert!(
        budget.peak() <= budget.capacity(),
        "peak {} over the budget {}",
        budget.peak(),
        budget.capacity()
    );
    assert!(budget.peak() >= per_image);
    assert_eq!(budget.in_use(), 0, "every reservation was released");

    // A budget smaller than one image: the image still decodes, alone.
    let small: &'static DecodeBudget = Box::leak(Box::new(DecodeBudget::new(per_image / 4)));
    let img = decode_bytes_full(
        &png,
        "big.png",
        &DecodeLimits {
            memory: small,
            ..DecodeLimits::default()
        },
    )
    .unwrap();
    assert_eq!(small.in_use(), per_image);
    drop(img);
    assert_eq!(small.in_use(), 0);
}
