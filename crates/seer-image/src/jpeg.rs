//! A JPEG decoder that reproduces libjpeg-turbo's default output (what PIL
//! shows): Huffman baseline/extended/progressive decoding, the `ISLOW`
//! integer IDCT (jidctint.c), "fancy" triangle-filter chroma upsampling
//! (jdsample.c h2v1/h1v2/h2v2, plain replication otherwise) and the 16-bit
//! fixed-point YCbCr->RGB tables of jdcolor.c. General-purpose Rust decoders
//! use other IDCT roundings and upsamplers and differ by 1-4 levels on many
//! pixels, which matters when the goal is bit parity with PIL.
//!
//! Not covered (reported as `Unsupported`): arithmetic coding, lossless and
//! hierarchical JPEG, 12-bit samples, 2-component images. Progressive block smoothing (which libjpeg
//! only applies to files whose coefficients were never fully refined) is not
//! reproduced.
//!
//! Every index into the input is bounds-checked: corrupt data gives an error or
//! garbage pixels, never a panic. Truncated data (no marker after a scan) is an
//! error, as in PIL.

/// Decoded samples in libjpeg's output colour space.
pub(crate) struct Jpeg {
    pub width: usize,
    pub height: usize,
    pub kind: JpegKind,
    /// Interleaved: 1 (gray), 3 (RGB) or 4 (CMYK as libjpeg outputs it, i.e.
    /// still Adobe-inverted) bytes per pixel.
    pub data: Vec<u8>,
    /// APP1 Exif payload after `Exif\0\0` (starts with the TIFF header).
    pub exif: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JpegKind {
    Gray,
    Rgb,
    Cmyk,
}

#[derive(Debug)]
pub(crate) enum JpegError {
    Unsupported(String),
    Corrupt(String),
    Truncated,
    TooManyPixels(usize, usize),
}

type R<T> = Result<T, JpegError>;

const MAX_SCANS: usize = 256;

fn corrupt<T>(msg: impl Into<String>) -> R<T> {
    Err(JpegError::Corrupt(msg.into()))
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[derive(Clone)]
struct Huffman {
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    vals: Vec<u8>,
    /// 9-bit lookahead: (code length, symbol); length 0 = not in table.
    lookup: Vec<(u8, u8)>,
}

const LOOKAHEAD: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], vals: Vec<u8>) -> R<Self> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total > vals.len() {
            return corrupt("bad Huffman table");
        }
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut lookup = vec![(0u8, 0u8); 1 << LOOKAHEAD];
        let mut code: i32 = 0;
        let mut k: i32 = 0;
        for len in 1..=16usize {
            let n = counts[len - 1] as i32;
            valoffset[len] = k - code;
            for _ in 0..n {
                if len as u32 <= LOOKAHEAD {
                    let shift = LOOKAHEAD - len as u32;
                    let base = (code as usize) << shift;
                    for e in lookup.iter_mut().skip(base).take(1 << shift) {
                        *e = (len as u8, vals[k as usize]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                maxcode[len] = code - 1;
            }
            if code > (1 << len) {
                return corrupt("bad Huffman table (over-subscribed)");
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(Huffman {
            maxcode,
            valoffset,
            vals,
            lookup,
        })
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    nbits: u32,
    /// A marker was reached: libjpeg feeds zero bits from here on.
    marker: bool,
    /// Ran off the end of the file inside entropy-coded data.
    eof: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            buf: 0,
            nbits: 0,
            marker: false,
            eof: false,
        }
    }

    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if !self.marker && !self.eof {
                match self.data.get(self.pos) {
                    None => self.eof = true,
                    Some(&0xFF) => {
                        let mut q = self.pos + 1;
                        while self.data.get(q) == Some(&0xFF) {
                            q += 1;
                        }
                        match self.data.get(q) {
                            Some(0) => {
                                byte = 0xFF;
                                self.pos = q + 1;
                            }
                            Some(_) => self.marker = true, // pos stays on the marker
                            None => self.eof = true,
                        }
                    }
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                }
            }
            self.buf |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    #[inline]
    fn bits(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        if self.nbits < n {
            self.fill();
        }
        let v = (self.buf >> (64 - n)) as i32;
        self.buf <<= n;
        self.nbits -= n;
        v
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.bits(1) != 0
    }

    /// Receive `s` bits and sign-extend (HUFF_EXTEND).
    #[inline]
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        if s > 16 {
            // Only corrupt data gets here; libjpeg would read garbage too.
            return 0;
        }
        let x = self.bits(s);
        if x < (1 << (s - 1)) {
            x + (-1 << s) + 1
        } else {
            x
        }
    }

    #[inline]
    fn decode(&mut self, h: &Huffman) -> u8 {
        if self.nbits < 16 {
            self.fill();
        }
        let peek = (self.buf >> (64 - LOOKAHEAD)) as usize;
        let (len, sym) = h.lookup[peek];
        if len > 0 {
            self.buf <<= len;
            self.nbits -= len as u32;
            return sym;
        }
        let mut code = 0i32;
        for len in 1..=16usize {
            code = (code << 1) | self.bits(1);
            if code <= h.maxcode[len] {
                let idx = (code + h.valoffset[len]) as usize;
                return h.vals.get(idx).copied().unwrap_or(0);
            }
        }
        0 // bad code: libjpeg warns and uses 0
    }

    /// Discard buffered bits and consume an RSTn marker if one is next.
    fn restart(&mut self) {
        self.buf = 0;
        self.nbits = 0;
        self.marker = false;
        let mut q = self.pos;
        while self.data.get(q) == Some(&0xFF) {
            q += 1;
        }
        if q > self.pos && matches!(self.data.get(q), Some(0xD0..=0xD7)) {
            self.pos = q + 1;
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks per row/column in the MCU-padded grid (coefficient storage).
    bw: usize,
    bh: usize,
    /// Blocks covering the component (non-interleaved scan extent).
    nbw: usize,
    nbh: usize,
    /// Downsampled size in samples.
    cw: usize,
    ch: usize,
    coefs: Vec<i16>,
    dc_pred: i32,
    dc_tbl: usize,
    ac_tbl: usize,
}

struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    hmax: usize,
    vmax: usize,
    mcus_x: usize,
    mcus_y: usize,
    comps: Vec<Component>,
}

fn u16be(d: &[u8], i: usize) -> R<usize> {
    match d.get(i..i + 2) {
        Some(s) => Ok(((s[0] as usize) << 8) | s[1] as usize),
        None => Err(JpegError::Truncated),
    }
}

/// Decode a JPEG; `max_pixels` is checked as soon as the frame header is read,
/// and `before_alloc(width, height)` runs before the frame's buffers are
/// allocated (to reserve decode memory).
pub(crate) fn decode(
    d: &[u8],
    max_pixels: u64,
    before_alloc: &mut dyn FnMut(usize, usize),
) -> R<Jpeg> {
    if d.get(0..2) != Some(&[0xFF, 0xD8]) {
        return corrupt("missing SOI marker");
    }
    let mut pos = 2;
    let mut qt = [[0u16; 64]; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut frame: Option<Frame> = None;
    let mut exif = None;
    let mut saw_jfif = false;
    let mut adobe_transform: Option<u8> = None;
    let mut eobrun = 0u32;
    let mut saw_eoi = false;
    let mut scans = 0usize;
    loop {
        // Find the next marker, skipping garbage and fill bytes like libjpeg.
        while pos < d.len() && d[pos] != 0xFF {
            pos += 1;
        }
        while pos < d.len() && d[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = d.get(pos) else { break };
        pos += 1;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue, // standalone markers
            0xD9 => {
                saw_eoi = true;
                break;
            }
            _ => {}
        }
        let len = u16be(d, pos)?;
        if len < 2 {
            return corrupt("bad marker length");
        }
        let seg = d.get(pos + 2..pos + len).ok_or(JpegError::Truncated)?;
        let seg_end = pos + len;
        match marker {
            0xE0 if seg.starts_with(b"JFIF\0") => saw_jfif = true,
            0xE1 if seg.starts_with(b"Exif\0\0") && exif.is_none() => {
                exif = Some(seg[6..].to_vec())
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe_transform = Some(seg[11]),
            0xDB => {
                let mut i = 0;
                while i < seg.len() {
                    let pq = seg[i] >> 4;
                    let tq = (seg[i] & 15) as usize;
                    if tq > 3 || pq > 1 {
                        return corrupt("bad quantisation table");
                    }
                    let n = if pq == 0 { 64 } else { 128 };
                    let t = seg
                        .get(i + 1..i + 1 + n)
                        .ok_or_else(|| JpegError::Corrupt("short DQT".into()))?;
                    for k in 0..64 {
                        qt[tq][ZIGZAG[k]] = if pq == 0 {
                            t[k] as u16
                        } else {
                            ((t[2 * k] as u16) << 8) | t[2 * k + 1] as u16
                        };
                    }
                    i += 1 + n;
                }
            }
            0xC4 => {
                let mut i = 0;
                while i < seg.len() {
                    let tc = seg[i] >> 4;
                    let th = (seg[i] & 15) as usize;
                    if tc > 1 || th > 3 {
                        return corrupt("bad Huffman table id");
                    }
                    let counts: [u8; 16] = seg
                        .get(i + 1..i + 17)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| JpegError::Corrupt("short DHT".into()))?;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = seg
                        .get(i + 17..i + 17 + total)
                        .ok_or_else(|| JpegError::Corrupt("short DHT".into()))?
                        .to_vec();
                    let table = Huffman::new(&counts, vals)?;
                    if tc == 0 {
                        dc_tables[th] = Some(table);
                    } else {
                        ac_tables[th] = Some(table);
                    }
                    i += 17 + total;
                }
            }
            0xDD => restart_interval = u16be(seg, 0)?,
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return corrupt("more than one frame header");
                }
                frame = Some(parse_sof(seg, marker == 0xC2, max_pixels, before_alloc)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Unsupported(format!(
                    "JPEG process SOF{} (lossless/hierarchical/arithmetic)",
                    marker - 0xC0
                )));
            }
            0xDA => {
                // Each scan is a pass over the whole image; real encoders use
                // at most a few dozen, so cap it against crafted files.
                if scans >= MAX_SCANS {
                    return corrupt(format!("more than {MAX_SCANS} scans"));
                }
                let f = frame
                    .as_mut()
                    .ok_or_else(|| JpegError::Corrupt("scan before frame header".into()))?;
                let ns = *seg.first().ok_or(JpegError::Truncated)? as usize;
                if ns == 0 || ns > 4 || seg.len() < 1 + 2 * ns + 3 {
                    return corrupt("bad scan header");
                }
                let mut sc = Vec::with_capacity(ns);
                for i in 0..ns {
                    let id = seg[1 + 2 * i];
                    let tables = seg[2 + 2 * i];
                    let ci = f.comps.iter().position(|c| c.id == id).ok_or_else(|| {
                        JpegError::Corrupt("scan references unknown component".into())
                    })?;
                    if sc.contains(&ci) {
                        return corrupt("component repeated in scan");
                    }
                    f.comps[ci].dc_tbl = (tables >> 4) as usize & 3;
                    f.comps[ci].ac_tbl = (tables & 15) as usize & 3;
                    sc.push(ci);
                }
                let ss = seg[1 + 2 * ns] as usize;
                let se = seg[2 + 2 * ns] as usize;
                let ah = (seg[3 + 2 * ns] >> 4) as u32;
                let al = (seg[3 + 2 * ns] & 15) as u32;
                let p = ScanParams { ss, se, ah, al };
                if f.progressive {
                    if ss > se
                        || se > 63
                        || (ss == 0 && se != 0)
                        || (ss > 0 && ns != 1)
                        || al > 13
                        || ah > 13
                    {
                        return corrupt("bad progressive scan parameters");
                    }
                } else if ss != 0 || se != 63 || ah != 0 || al != 0 {
                    // libjpeg only warns here for sequential files; decode as a full scan.
                }
                let mut br = BitReader::new(d, seg_end);
                decode_scan(
                    f,
                    &sc,
                    p,
                    &dc_tables,
                    &ac_tables,
                    restart_interval,
                    &mut br,
                    &mut eobrun,
                )?;
                if br.eof {
                    return Err(JpegError::Truncated);
                }
                scans += 1;
                pos = br.pos;
                continue;
            }
            0xDC => return Err(JpegError::Unsupported("DNL marker".into())),
            _ => {} // APPn, COM, ...: skipped
        }
        pos = seg_end;
    }
    let f = frame.ok_or_else(|| JpegError::Corrupt("no frame header".into()))?;
    if scans == 0 || (!saw_eoi && f.progressive) {
        return Err(JpegError::Truncated);
    }
    // libjpeg's default_decompress_parms.
    let n = f.comps.len();
    let ids: Vec<u8> = f.comps.iter().map(|c| c.id).collect();
    let kind_in = match n {
        1 => Space::Gray,
        3 if saw_jfif => Space::YCbCr,
        3 if adobe_transform.is_some() => {
            if adobe_transform == Some(0) {
                Space::Rgb
            } else {
                Space::YCbCr
            }
        }
        3 if ids == [82, 71, 66] => Space::Rgb,
        3 => Space::YCbCr,
        4 => match adobe_transform {
            None | Some(0) => Space::Cmyk,
            Some(_) => Space::Ycck,
        },
        _ => return Err(JpegError::Unsupported(format!("{n}-component JPEG"))),
    };
    let planes: Vec<Vec<u8>> = f
        .comps
        .iter()
        .map(|c| component_plane(&f, c, &qt))
        .collect();
    let (w, h) = (f.width, f.height);
    let mut data = vec![0u8; w * h * n];
    match kind_in {
        Space::Gray => data.copy_from_slice(&planes[0]),
        Space::Rgb | Space::Cmyk => {
            for (i, px) in data.chunks_exact_mut(n).enumerate() {
                for (c, v) in px.iter_mut().enumerate() {
                    *v = planes[c][i];
                }
            }
        }
        Space::YCbCr | Space::Ycck => {
            let t = YccTables::new();
            for (i, px) in data.chunks_exact_mut(n).enumerate() {
                let (r, g, b) = t.convert(planes[0][i], planes[1][i], planes[2][i]);
                if n == 3 {
                    px.copy_from_slice(&[r, g, b]);
                } else {
                    // ycck_cmyk_convert: CMY = 255 - RGB, K unchanged.
                    px.copy_from_slice(&[255 - r, 255 - g, 255 - b, planes[3][i]]);
                }
            }
        }
    }
    Ok(Jpeg {
        width: w,
        height: h,
        kind: match n {
            1 => JpegKind::Gray,
            3 => JpegKind::Rgb,
            _ => JpegKind::Cmyk,
        },
        data,
        exif,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Space {
    Gray,
    YCbCr,
    Rgb,
    Cmyk,
    Ycck,
}

fn parse_sof(
    seg: &[u8],
    progressive: bool,
    max_pixels: u64,
    before_alloc: &mut dyn FnMut(usize, usize),
) -> R<Frame> {
    if seg.len() < 6 {
        return Err(JpegError::Truncated);
    }
    if seg[0] != 8 {
        return Err(JpegError::Unsupported(format!("{}-bit samples", seg[0])));
    }
    let height = u16be(seg, 1)?;
    let width = u16be(seg, 3)?;
    let n = seg[5] as usize;
    if width == 0 || height == 0 {
        return Err(JpegError::Unsupported("zero-sized frame (DNL)".into()));
    }
    if (width as u64) * (height as u64) > max_pixels {
        return Err(JpegError::TooManyPixels(width, height));
    }
    if !matches!(n, 1 | 3 | 4) {
        return Err(JpegError::Unsupported(format!("{n}-component JPEG")));
    }
    if seg.len() < 6 + 3 * n {
        return Err(JpegError::Truncated);
    }
    let mut comps = Vec::with_capacity(n);
    for i in 0..n {
        let c = &seg[6 + 3 * i..9 + 3 * i];
        let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
            return corrupt("bad sampling factors or quantisation table id");
        }
        comps.push((c[0], h, v, c[2] as usize));
    }
    before_alloc(width, height);
    let hmax = comps.iter().map(|c| c.1).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.2).max().unwrap_or(1);
    let mcus_x = width.div_ceil(8 * hmax);
    let mcus_y = height.div_ceil(8 * vmax);
    let comps = comps
        .into_iter()
        .map(|(id, h, v, tq)| {
            let cw = (width * h).div_ceil(hmax);
            let ch = (height * v).div_ceil(vmax);
            let (bw, bh) = (mcus_x * h, mcus_y * v);
            Component {
                id,
                h,
                v,
                tq,
                bw,
                bh,
                nbw: cw.div_ceil(8),
                nbh: ch.div_ceil(8),
                cw,
                ch,
                coefs: vec![0i16; bw * bh * 64],
                dc_pred: 0,
                dc_tbl: 0,
                ac_tbl: 0,
            }
        })
        .collect();
    Ok(Frame {
        width,
        height,
        progressive,
        hmax,
        vmax,
        mcus_x,
        mcus_y,
        comps,
    })
}

#[derive(Clone, Copy)]
struct ScanParams {
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    f: &mut Frame,
    sc: &[usize],
    p: ScanParams,
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    restart_interval: usize,
    br: &mut BitReader,
    eobrun: &mut u32,
) -> R<()> {
    for &ci in sc {
        f.comps[ci].dc_pred = 0;
        let c = &f.comps[ci];
        let needs_dc = !f.progressive || (p.ss == 0 && p.ah == 0);
        let needs_ac = !f.progressive || p.ss > 0;
        if needs_dc && dc_tables[c.dc_tbl].is_none() || needs_ac && ac_tables[c.ac_tbl].is_none() {
            return corrupt("scan uses an undefined Huffman table");
        }
    }
    *eobrun = 0;
    let mut mcu = 0usize;
    let mut restart = |br: &mut BitReader, f: &mut Frame, eobrun: &mut u32| {
        if restart_interval > 0 && mcu > 0 && mcu.is_multiple_of(restart_interval) {
            br.restart();
            for &ci in sc {
                f.comps[ci].dc_pred = 0;
            }
            *eobrun = 0;
        }
        mcu += 1;
    };
    if sc.len() == 1 {
        let ci = sc[0];
        let (nbw, nbh, bw) = (f.comps[ci].nbw, f.comps[ci].nbh, f.comps[ci].bw);
        for by in 0..nbh {
            for bx in 0..nbw {
                restart(br, f, eobrun);
                decode_block(f, ci, by * bw + bx, p, dc_tables, ac_tables, br, eobrun);
                if br.eof {
                    return Ok(());
                }
            }
        }
    } else {
        for my in 0..f.mcus_y {
            for mx in 0..f.mcus_x {
                restart(br, f, eobrun);
                for &ci in sc {
                    let (h, v, bw) = (f.comps[ci].h, f.comps[ci].v, f.comps[ci].bw);
                    for y in 0..v {
                        for x in 0..h {
                            let b = (my * v + y) * bw + mx * h + x;
                            decode_block(f, ci, b, p, dc_tables, ac_tables, br, eobrun);
                        }
                    }
                }
                if br.eof {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn decode_block(
    f: &mut Frame,
    ci: usize,
    b: usize,
    p: ScanParams,
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    br: &mut BitReader,
    eobrun: &mut u32,
) {
    let progressive = f.progressive;
    let c = &mut f.comps[ci];
    let Some(blk) = c.coefs.get_mut(b * 64..b * 64 + 64) else {
        return;
    };
    let dc = dc_tables[c.dc_tbl].as_ref();
    let ac = ac_tables[c.ac_tbl].as_ref();
    if !progressive {
        let (Some(dc), Some(ac)) = (dc, ac) else {
            return;
        };
        let s = br.decode(dc) as u32;
        c.dc_pred = c.dc_pred.wrapping_add(br.receive_extend(s));
        blk[0] = c.dc_pred as i16;
        let mut k = 1;
        while k < 64 {
            let rs = br.decode(ac);
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s != 0 {
                k += r;
                if k > 63 {
                    break;
                }
                blk[ZIGZAG[k]] = br.receive_extend(s) as i16;
                k += 1;
            } else if r == 15 {
                k += 16;
            } else {
                break;
            }
        }
        return;
    }
    let (ss, se, ah, al) = (p.ss, p.se, p.ah, p.al);
    if ss == 0 {
        if ah == 0 {
            let Some(dc) = dc else { return };
            let s = br.decode(dc) as u32;
            c.dc_pred = c.dc_pred.wrapping_add(br.receive_extend(s));
            blk[0] = (c.dc_pred.wrapping_shl(al)) as i16;
        } else if br.bit() {
            blk[0] |= (1i32 << al) as i16;
        }
        return;
    }
    let Some(ac) = ac else { return };
    if ah == 0 {
        // AC first pass.
        if *eobrun > 0 {
            *eobrun -= 1;
            return;
        }
        let mut k = ss;
        while k <= se {
            let rs = br.decode(ac);
            let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
            if s != 0 {
                k += r as usize;
                if k > 63 {
                    break;
                }
                blk[ZIGZAG[k]] = (br.receive_extend(s).wrapping_shl(al)) as i16;
                k += 1;
            } else if r == 15 {
                k += 16;
            } else {
                *eobrun = 1 << r;
                if r > 0 {
                    *eobrun += br.bits(r) as u32;
                }
                *eobrun -= 1;
                break;
            }
        }
        return;
    }
    // AC refinement (jdphuff.c decode_mcu_AC_refine).
    let p1 = 1i32 << al;
    let m1 = -1i32 << al;
    let mut k = ss;
    let refine = |br: &mut BitReader, coef: &mut i16| {
        if br.bit() && (*coef as i32 & p1) == 0 {
            *coef = if *coef >= 0 {
                (*coef as i32 + p1) as i16
            } else {
                (*coef as i32 + m1) as i16
            };
        }
    };
    if *eobrun == 0 {
        while k <= se {
            let rs = br.decode(ac);
            let mut r = (rs >> 4) as i32;
            let s = (rs & 15) as u32;
            let mut val = 0i32;
            if s != 0 {
                val = if br.bit() { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = 1 << r;
                if r > 0 {
                    *eobrun += br.bits(r as u32) as u32;
                }
                break;
            }
            while k <= se {
                let coef = &mut blk[ZIGZAG[k]];
                if *coef != 0 {
                    refine(br, coef);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if val != 0 && k <= 63 {
                blk[ZIGZAG[k]] = val as i16;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= se {
            let coef = &mut blk[ZIGZAG[k]];
            if *coef != 0 {
                refine(br, coef);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
}

// libjpeg's islow IDCT constants: 13-bit fixed point, 2 extra bits between passes.
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const F_0_298: i64 = 2446;
const F_0_390: i64 = 3196;
const F_0_541: i64 = 4433;
const F_0_765: i64 = 6270;
const F_0_899: i64 = 7373;
const F_1_175: i64 = 9633;
const F_1_501: i64 = 12299;
const F_1_847: i64 = 15137;
const F_1_961: i64 = 16069;
const F_2_053: i64 = 16819;
const F_2_562: i64 = 20995;
const F_3_072: i64 = 25172;

/// libjpeg's rounding right shift (DESCALE).
fn descale(x: i64, n: u32) -> i64 {
    (x + (1i64 << (n - 1))) >> n
}

/// One 8-point islow IDCT butterfly, shared by the column and row passes; returns
/// the outputs in natural order, still scaled by 2^CONST_BITS (integer arithmetic,
/// so the order of the additions cannot change the result).
fn islow_1d(x: [i64; 8]) -> [i64; 8] {
    // Even part.
    let z1 = (x[2] + x[6]) * F_0_541;
    let tmp2 = z1 + x[6] * -F_1_847;
    let tmp3 = z1 + x[2] * F_0_765;
    let tmp0 = (x[0] + x[4]) << CONST_BITS;
    let tmp1 = (x[0] - x[4]) << CONST_BITS;
    let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
    // Odd part.
    let (mut t0, mut t1, mut t2, mut t3) = (x[7], x[5], x[3], x[1]);
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * F_1_175;
    t0 *= F_0_298;
    t1 *= F_2_053;
    t2 *= F_3_072;
    t3 *= F_1_501;
    let z1 = z1 * -F_0_899;
    let z2 = z2 * -F_2_562;
    let z3 = z3 * -F_1_961 + z5;
    let z4 = z4 * -F_0_390 + z5;
    t0 += z1 + z3;
    t1 += z2 + z4;
    t2 += z2 + z3;
    t3 += z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// IDCT_range_limit(x & RANGE_MASK): clamp(x + 128) for x in [-512, 511], wrapping beyond.
fn range_limit(x: i64) -> u8 {
    let i = (x as i32 & 1023) as usize;
    match i {
        0..=127 => (i + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (i - 896) as u8,
    }
}

/// libjpeg-turbo's default (JDCT_ISLOW) inverse DCT of one dequantised block:
/// columns into a workspace, then rows into `out`, with libjpeg's shortcuts for
/// all-zero AC terms (which round differently, so they must be kept).
fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let dq = |r: usize| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64;
        if (1..8).all(|r| coef[r * 8 + col] == 0) {
            let dc = (dq(0) << PASS1_BITS) as i32;
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let y = islow_1d(std::array::from_fn(dq));
        for (r, v) in y.into_iter().enumerate() {
            ws[r * 8 + col] = descale(v, CONST_BITS - PASS1_BITS) as i32;
        }
    }
    for row in 0..8 {
        let w = &ws[row * 8..row * 8 + 8];
        let o = &mut out[row * stride..row * stride + 8];
        if w[1..].iter().all(|&v| v == 0) {
            o.fill(range_limit(descale(w[0] as i64, PASS1_BITS + 3)));
            continue;
        }
        let y = islow_1d(std::array::from_fn(|i| w[i] as i64));
        for (o, v) in o.iter_mut().zip(y) {
            *o = range_limit(descale(v, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// IDCT a component and upsample it to full resolution (width x height).
fn component_plane(f: &Frame, c: &Component, qt: &[[u16; 64]; 4]) -> Vec<u8> {
    let stride = c.bw * 8;
    let mut plane = vec![0u8; stride * c.bh * 8];
    let q = &qt[c.tq];
    for by in 0..c.nbh.min(c.bh) {
        for bx in 0..c.nbw.min(c.bw) {
            let b = by * c.bw + bx;
            let off = by * 8 * stride + bx * 8;
            idct_islow(&c.coefs[b * 64..b * 64 + 64], q, &mut plane[off..], stride);
        }
    }
    let (hr, vr) = (f.hmax / c.h, f.vmax / c.v);
    let (cw, ch) = (c.cw, c.ch);
    let px = |x: usize, y: usize| plane[y * stride + x] as i32;
    let (ow, oh) = (cw * hr, ch * vr);
    let mut out = vec![0u8; ow * oh];
    let exact = f.hmax.is_multiple_of(c.h) && f.vmax.is_multiple_of(c.v);
    match (hr, vr) {
        (1, 1) => {
            for y in 0..ch {
                out[y * ow..y * ow + cw].copy_from_slice(&plane[y * stride..y * stride + cw]);
            }
        }
        (2, 1) if cw > 2 => {
            for y in 0..ch {
                let o = &mut out[y * ow..(y + 1) * ow];
                h2v1_fancy(|x| px(x, y), cw, o);
            }
        }
        (1, 2) => {
            for y in 0..ch {
                let above = y.saturating_sub(1);
                let below = (y + 1).min(ch - 1);
                for (v, (near2, bias)) in [(above, 1), (below, 2)].into_iter().enumerate() {
                    let o = &mut out[(2 * y + v) * ow..(2 * y + v + 1) * ow];
                    for (x, ov) in o.iter_mut().enumerate() {
                        *ov = ((px(x, y) * 3 + px(x, near2) + bias) >> 2) as u8;
                    }
                }
            }
        }
        (2, 2) if cw > 2 => {
            for y in 0..ch {
                let above = y.saturating_sub(1);
                let below = (y + 1).min(ch - 1);
                for (v, near2) in [above, below].into_iter().enumerate() {
                    let o = &mut out[(2 * y + v) * ow..(2 * y + v + 1) * ow];
                    h2v2_fancy_row(|x| px(x, y) * 3 + px(x, near2), cw, o);
                }
            }
        }
        _ if exact => {
            for y in 0..oh {
                for x in 0..ow {
                    out[y * ow + x] = plane[(y / vr) * stride + x / hr];
                }
            }
        }
        _ => {
            // Fractional sampling ratios: libjpeg refuses them; replicate so we never fail here.
            for y in 0..oh {
                for x in 0..ow {
                    out[y * ow + x] = plane[((y * c.v / f.vmax).min(ch - 1)) * stride
                        + (x * c.h / f.hmax).min(cw - 1)];
                }
            }
        }
    }
    // Crop to the image size.
    if ow == f.width && oh == f.height {
        return out;
    }
    let mut cropped = vec![0u8; f.width * f.height];
    for y in 0..f.height.min(oh) {
        let n = f.width.min(ow);
        cropped[y * f.width..y * f.width + n].copy_from_slice(&out[y * ow..y * ow + n]);
    }
    cropped
}

fn h2v1_fancy(inp: impl Fn(usize) -> i32, n: usize, out: &mut [u8]) {
    out[0] = inp(0) as u8;
    out[1] = ((inp(0) * 3 + inp(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let v = inp(i) * 3;
        out[2 * i] = ((v + inp(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((v + inp(i + 1) + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((inp(n - 1) * 3 + inp(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = inp(n - 1) as u8;
}

/// One output row of h2v2_fancy_upsample from column sums (3*near + far).
fn h2v2_fancy_row(colsum: impl Fn(usize) -> i32, n: usize, out: &mut [u8]) {
    let mut this = colsum(0);
    let mut next = colsum(1);
    out[0] = ((this * 4 + 8) >> 4) as u8;
    out[1] = ((this * 3 + next + 7) >> 4) as u8;
    let mut last = this;
    this = next;
    for i in 1..n - 1 {
        next = colsum(i + 1);
        out[2 * i] = ((this * 3 + last + 8) >> 4) as u8;
        out[2 * i + 1] = ((this * 3 + next + 7) >> 4) as u8;
        last = this;
        this = next;
    }
    out[2 * n - 2] = ((this * 3 + last + 8) >> 4) as u8;
    out[2 * n - 1] = ((this * 4 + 7) >> 4) as u8;
}

/// jdcolor.c `build_ycc_rgb_table` + `ycc_rgb_convert`.
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> Self {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * (1i64 << SCALEBITS) as f64 + 0.5) as i64;
        let mut t = YccTables {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }

    #[inline]
    fn convert(&self, y: u8, cb: u8, cr: u8) -> (u8, u8, u8) {
        let y = y as i32;
        let (cb, cr) = (cb as usize, cr as usize);
        let r = y + self.cr_r[cr];
        let g = y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        let b = y + self.cb_b[cb];
        (
            r.clamp(0, 255) as u8,
            g.clamp(0, 255) as u8,
            b.clamp(0, 255) as u8,
        )
    }
}
