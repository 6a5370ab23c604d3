//! JPEGs with an EXIF capture time, for the date filters (the shared test photos
//! carry none).
#![allow(dead_code)]

/// `jpeg` with an APP1 Exif segment holding DateTimeOriginal `taken`
/// ("YYYY:MM:DD HH:MM:SS") inserted right after the SOI marker.
pub fn with_capture_time(jpeg: &[u8], taken: &str) -> Vec<u8> {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    assert_eq!(taken.len(), 19, "EXIF dates are YYYY:MM:DD HH:MM:SS");
    let entry = |tag: u16, kind: u16, count: u32, value: u32| {
        let mut e = Vec::new();
        e.extend(tag.to_le_bytes());
        e.extend(kind.to_le_bytes());
        e.extend(count.to_le_bytes());
        e.extend(value.to_le_bytes());
        e
    };
    // Little-endian TIFF: IFD0 at 8 with one entry (the Exif IFD pointer), the Exif
    // IFD at 26 with DateTimeOriginal, whose 20 ASCII bytes follow at 44.
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(entry(0x8769, 4, 1, 26));
    tiff.extend(0u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(entry(0x9003, 2, 20, 44));
    tiff.extend(0u32.to_le_bytes());
    assert_eq!(tiff.len(), 44);
    tiff.extend(taken.as_bytes());
    tiff.push(0);
    with_exif(jpeg, tiff)
}

/// `jpeg` with an APP1 Exif segment whose IFD0 holds Orientation `value`,
/// inserted right after the SOI marker.
pub fn with_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    // Orientation (0x0112), SHORT, one value, left-justified in its 4 bytes.
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(value.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    with_exif(jpeg, tiff)
}

/// `jpeg` with the TIFF structure `tiff` as an APP1 Exif segment right after
/// the SOI marker.
fn with_exif(jpeg: &[u8], tiff: Vec<u8>) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// Capture times of the photos [`dated_photos`] writes, as the index stores them.
pub const DATED: [(&str, &str, &str); 3] = [
    (
        "cat-2019.jpg",
        "rclip-formats/cat.jpg",
        "2019:05:01 10:00:00",
    ),
    (
        "bee-2020.jpg",
        "rclip-formats/bee.jpg",
        "2020:07:15 08:30:00",
    ),
    (
        "cake-2021.jpg",
        "rclip-formats/cake.jpg",
        "2021:12:31 23:00:00",
    ),
];

/// A folder of three smoke photos given EXIF capture times (see [`DATED`]).
pub fn dated_photos() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, source, taken) in DATED {
        let jpeg = std::fs::read(seer_testkit::shared_data().join("smoke").join(source)).unwrap();
        std::fs::write(dir.path().join(name), with_capture_time(&jpeg, taken)).unwrap();
    }
    dir
}
