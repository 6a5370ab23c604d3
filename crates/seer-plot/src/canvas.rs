//! Drawing primitives on an RGB image: clipped pixels, rectangles, lines, dots, text.

use image::{Rgb, RgbImage};

use crate::font;

/// An RGB colour.
pub type Colour = [u8; 3];

/// An RGB image with a clip rectangle that every primitive respects.
pub struct Canvas {
    /// The image drawn on.
    pub img: RgbImage,
    /// Clip rectangle: `x0, y0` inclusive, `x1, y1` exclusive.
    clip: (i64, i64, i64, i64),
}

impl Canvas {
    /// A `width` x `height` canvas filled with `background`, clipped to its bounds.
    pub fn new(width: u32, height: u32, background: Colour) -> Self {
        let img = RgbImage::from_pixel(width, height, Rgb(background));
        Canvas {
            img,
            clip: (0, 0, width as i64, height as i64),
        }
    }

    /// Restricts drawing to `x0..x1, y0..y1` (within the image), or lifts the restriction.
    pub fn set_clip(&mut self, rect: Option<(i64, i64, i64, i64)>) {
        let (w, h) = (self.img.width() as i64, self.img.height() as i64);
        self.clip = match rect {
            Some((x0, y0, x1, y1)) => (x0.max(0), y0.max(0), x1.min(w), y1.min(h)),
            None => (0, 0, w, h),
        };
    }

    /// Sets one pixel if it lies inside the clip rectangle.
    pub fn put(&mut self, x: i64, y: i64, c: Colour) {
        let (x0, y0, x1, y1) = self.clip;
        if x >= x0 && x < x1 && y >= y0 && y < y1 {
            self.img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }

    /// Fills the `w` x `h` rectangle with top-left corner (`x`, `y`).
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Colour) {
        let (x0, y0, x1, y1) = self.clip;
        for yy in y.max(y0)..(y + h).min(y1) {
            for xx in x.max(x0)..(x + w).min(x1) {
                self.img.put_pixel(xx as u32, yy as u32, Rgb(c));
            }
        }
    }

    /// A `thick`-pixel line from `a` to `b` (Bresenham), clipped first so that far
    /// off-canvas or huge coordinates cost nothing. Non-finite points draw nothing.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), c: Colour, thick: i64) {
        let (x0, y0, x1, y1) = self.clip;
        let m = thick as f64 + 1.0;
        let rect = (x0 as f64 - m, y0 as f64 - m, x1 as f64 + m, y1 as f64 + m);
        let Some((a, b)) = clip_segment(a, b, rect) else {
            return;
        };
        let (mut x, mut y) = (a.0.round() as i64, a.1.round() as i64);
        let (xe, ye) = (b.0.round() as i64, b.1.round() as i64);
        let (dx, dy) = ((xe - x).abs(), -(ye - y).abs());
        let (sx, sy) = (if x < xe { 1 } else { -1 }, if y < ye { 1 } else { -1 });
        let mut err = dx + dy;
        let off = (thick - 1) / 2;
        loop {
            self.fill_rect(x - off, y - off, thick, thick, c);
            if x == xe && y == ye {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A filled disc of radius `r` centred on `p`.
    pub fn dot(&mut self, p: (f64, f64), r: i64, c: Colour) {
        if !(p.0.is_finite() && p.1.is_finite()) || p.0.abs() > 1e6 || p.1.abs() > 1e6 {
            return;
        }
        let (cx, cy) = (p.0.round() as i64, p.1.round() as i64);
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r + r {
                    self.put(cx + dx, cy + dy, c);
                }
            }
        }
    }

    /// Draws `s` with its top-left corner at (`x`, `y`), each font pixel `scale` wide.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Colour) {
        for (i, ch) in s.chars().enumerate() {
            let g = font::glyph(ch);
            let gx = x + i as i64 * font::ADVANCE * scale;
            for row in 0..font::GLYPH_H {
                for col in 0..font::GLYPH_W {
                    if font::pixel(g, col, row) {
                        self.fill_rect(gx + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Draws `s` rotated a quarter turn anticlockwise (reading upwards), starting at
    /// bottom-left corner (`x`, `y`).
    pub fn text_up(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Colour) {
        for (i, ch) in s.chars().enumerate() {
            let g = font::glyph(ch);
            let gy = y - i as i64 * font::ADVANCE * scale;
            for row in 0..font::GLYPH_H {
                for col in 0..font::GLYPH_W {
                    if font::pixel(g, col, row) {
                        self.fill_rect(x + row * scale, gy - (col + 1) * scale, scale, scale, c);
                    }
                }
            }
        }
    }
}

/// Liang-Barsky: the part of segment `a`-`b` inside `(x0, y0, x1, y1)`, if any. An end
/// cut by a side lies exactly on it, and both ends are clamped into the rectangle, so
/// huge inputs cannot yield far-away points.
fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    (x0, y0, x1, y1): (f64, f64, f64, f64),
) -> Option<((f64, f64), (f64, f64))> {
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    // Parameter and the side that set it (0: x = x0, 1: x = x1, 2: y = y0, 3: y = y1).
    let (mut t0, mut t1) = ((0.0f64, None), (1.0f64, None));
    for (side, (p, q)) in [
        (-dx, a.0 - x0),
        (dx, x1 - a.0),
        (-dy, a.1 - y0),
        (dy, y1 - a.1),
    ]
    .into_iter()
    .enumerate()
    {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
            continue;
        }
        let r = q / p;
        if p < 0.0 && r > t0.0 {
            t0 = (r, Some(side));
        } else if p > 0.0 && r < t1.0 {
            t1 = (r, Some(side));
        }
        if t0.0 > t1.0 {
            return None;
        }
    }
    let point = |(t, side): (f64, Option<usize>)| {
        let (mut x, mut y) = (a.0 + t * dx, a.1 + t * dy);
        match side {
            Some(0) => x = x0,
            Some(1) => x = x1,
            Some(2) => y = y0,
            Some(3) => y = y1,
            _ => {}
        }
        (x.clamp(x0, x1), y.clamp(y0, y1))
    };
    Some((point(t0), point(t1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_clipped_and_never_panic() {
        let mut c = Canvas::new(20, 10, [255; 3]);
        c.set_clip(Some((5, 2, 15, 8)));
        c.line((-1e300, 5.0), (1e300, 5.0), [0; 3], 2);
        c.line((f64::NAN, 0.0), (3.0, 3.0), [0; 3], 1);
        c.line((100.0, 100.0), (200.0, 300.0), [0; 3], 1);
        c.dot((f64::INFINITY, 1.0), 3, [0; 3]);
        c.text(-50, -50, "clipped away é", 3, [0; 3]);
        for (x, y, p) in c.img.enumerate_pixels() {
            let inside = (5..15).contains(&x) && (2..8).contains(&y);
            assert!(
                inside || p.0 == [255; 3],
                "pixel {x},{y} drawn outside the clip"
            );
        }
        assert_eq!(c.img.get_pixel(10, 5).0, [0; 3]);
        assert_eq!(c.img.get_pixel(10, 6).0, [0; 3]);
    }

    #[test]
    fn diagonal_line_hits_both_ends() {
        let mut c = Canvas::new(10, 10, [255; 3]);
        c.line((1.0, 1.0), (8.0, 6.0), [0; 3], 1);
        assert_eq!(c.img.get_pixel(1, 1).0, [0; 3]);
        assert_eq!(c.img.get_pixel(8, 6).0, [0; 3]);
    }
}
