//! ffprobe's JSON (`-print_format json -show_format -show_streams`) to
//! [`VideoInfo`]. Only the fields used are declared; everything in them is
//! optional because ffprobe leaves out what it does not know.

use serde::Deserialize;

use crate::VideoInfo;

#[derive(Deserialize, Default)]
struct Probe {
    #[serde(default)]
    streams: Vec<Stream>,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize, Default)]
struct Format {
    duration: Option<String>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize, Default)]
struct Tags {
    creation_time: Option<String>,
    rotate: Option<String>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    side_data_list: Vec<SideData>,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

/// The parsed facts.
#[derive(Debug, PartialEq)]
pub(crate) struct Probed {
    pub info: VideoInfo,
}

#[derive(Debug, PartialEq)]
pub(crate) enum ProbeError {
    NoVideoStream,
    BadJson(String),
}

pub(crate) fn parse(json: &[u8]) -> Result<Probed, ProbeError> {
    let probe: Probe =
        serde_json::from_slice(json).map_err(|e| ProbeError::BadJson(e.to_string()))?;
    // Cover art in audio files is a one-picture "video" stream: not a video.
    let stream = probe
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.attached_pic == 0
                && s.width.unwrap_or(0) > 0
                && s.height.unwrap_or(0) > 0
        })
        .ok_or(ProbeError::NoVideoStream)?;
    let duration = seconds(probe.format.duration.as_deref())
        .or_else(|| seconds(stream.duration.as_deref()))
        .unwrap_or(0.0);
    let rotation = stream
        .side_data_list
        .iter()
        .find_map(|d| d.rotation)
        .or_else(|| {
            stream
                .tags
                .rotate
                .as_deref()
                .and_then(|r| r.trim().parse().ok())
        })
        .unwrap_or(0.0);
    let (mut width, mut height) = (stream.width.unwrap_or(0), stream.height.unwrap_or(0));
    // ffmpeg's autorotation turns the frames upright, so a quarter turn
    // swaps the dimensions the caller will see.
    if (rotation.round() as i64).rem_euclid(180) == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let taken_at = stream
        .tags
        .creation_time
        .as_deref()
        .or(probe.format.tags.creation_time.as_deref())
        .and_then(creation_time);
    Ok(Probed {
        info: VideoInfo {
            duration,
            width,
            height,
            codec: stream.codec_name.clone().unwrap_or_default(),
            taken_at,
        },
    })
}

/// A positive, finite number of seconds.
fn seconds(s: Option<&str>) -> Option<f64> {
    let v: f64 = s?.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v)
}

/// `2024-05-01T12:34:56.000000Z` → `2024-05-01 12:34:56`. Containers store
/// UTC here (QuickTime/Matroska); a tag that does not look like a date is
/// dropped rather than passed on. The all-zero date some cameras write is
/// "unknown".
fn creation_time(tag: &str) -> Option<String> {
    let b = tag.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape || &b[0..4] == b"0000" || &b[0..4] == b"1904" && &b[5..10] == b"01-01" {
        return None;
    }
    let s = std::str::from_utf8(&b[..19]).ok()?;
    Some(format!("{} {}", &s[..10], &s[11..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_duration_and_date() {
        let json = br#"{"streams":[
            {"index":0,"codec_type":"audio","codec_name":"aac"},
            {"index":1,"codec_type":"video","codec_name":"h264","width":1920,"height":1080,
             "duration":"9.5","side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}],
             "tags":{"creation_time":"2024-05-01T12:34:56.000000Z"}}],
            "format":{"duration":"10.000000","tags":{}}}"#;
        let p = parse(json).unwrap();
        assert_eq!(
            p.info,
            VideoInfo {
                duration: 10.0,
                width: 1080,
                height: 1920,
                codec: "h264".into(),
                taken_at: Some("2024-05-01 12:34:56".into()),
            }
        );
    }

    #[test]
    fn rotate_tag_stream_duration_and_format_date() {
        let json = br#"{"streams":[{"index":0,"codec_type":"video","codec_name":"vp9",
            "width":4,"height":2,"duration":"2.5","tags":{"rotate":"270"}}],
            "format":{"duration":"N/A","tags":{"creation_time":"2020-01-02 03:04:05"}}}"#;
        let p = parse(json).unwrap();
        assert_eq!((p.info.width, p.info.height, p.info.duration), (2, 4, 2.5));
        assert_eq!(p.info.taken_at.as_deref(), Some("2020-01-02 03:04:05"));
        // 180 degrees keeps the dimensions.
        let json = br#"{"streams":[{"codec_type":"video","width":4,"height":2,
            "side_data_list":[{"rotation":180}]}],"format":{}}"#;
        let p = parse(json).unwrap();
        assert_eq!((p.info.width, p.info.height), (4, 2));
    }

    #[test]
    fn unknown_duration_is_zero() {
        for d in [r#""N/A""#, r#""0.000000""#, r#""nan""#, r#""-3""#, "null"] {
            let json = format!(
                r#"{{"streams":[{{"codec_type":"video","width":4,"height":2}}],"format":{{"duration":{d}}}}}"#
            );
            assert_eq!(parse(json.as_bytes()).unwrap().info.duration, 0.0, "{d}");
        }
    }

    #[test]
    fn cover_art_and_audio_are_not_video() {
        let json = br#"{"streams":[{"codec_type":"audio"},
            {"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}}],
            "format":{"duration":"3.0"}}"#;
        assert_eq!(parse(json), Err(ProbeError::NoVideoStream));
        assert_eq!(parse(b"{}"), Err(ProbeError::NoVideoStream));
        assert!(matches!(parse(b"not json"), Err(ProbeError::BadJson(_))));
    }

    #[test]
    fn creation_time_shapes() {
        assert_eq!(
            creation_time("2024-05-01T12:34:56Z").as_deref(),
            Some("2024-05-01 12:34:56")
        );
        assert_eq!(creation_time("0000-00-00T00:00:00Z"), None);
        assert_eq!(creation_time("1904-01-01T00:00:00Z"), None);
        assert_eq!(creation_time("yesterday"), None);
        assert_eq!(creation_time("2024-05-01T12:34"), None);
    }
}
