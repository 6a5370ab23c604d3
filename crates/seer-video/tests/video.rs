//! seer-video against real ffmpeg and the fixtures of
//! scripts/make_video_fixtures.sh. These need ffmpeg: without it they FAIL
//! (saying to install it) rather than skip. Tests with a fake ffmpeg script
//! (the stall watchdog, a missing program) run anywhere with a POSIX shell.
#![cfg(unix)]

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use seer_video::{has_video_extension, Ffmpeg, Frame, FrameLimits, Sampling, VideoError};

fn ff() -> Ffmpeg {
    Ffmpeg::find(None).unwrap_or_else(|e| {
        panic!(
            "these tests need ffmpeg and ffprobe on PATH: install ffmpeg \
             (e.g. `apt install ffmpeg`): {e}"
        )
    })
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/video")
        .join(name)
}

/// The colours of colors.mkv, one per second, from colors.json.
fn colors() -> Vec<[u8; 3]> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("colors.json")).unwrap()).unwrap();
    json["colors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let v = u32::from_str_radix(c.as_str().unwrap(), 16).unwrap();
            [(v >> 16) as u8, (v >> 8) as u8, v as u8]
        })
        .collect()
}

fn all_frames(ff: &Ffmpeg, path: &Path, sampling: &Sampling) -> Result<Vec<Frame>, VideoError> {
    let info = ff.probe(path)?;
    let mut frames = Vec::new();
    let n = ff.frames(path, &info, sampling, &mut |f| {
        frames.push(f);
        true
    })?;
    assert_eq!(n, frames.len());
    Ok(frames)
}

fn sampling(interval: f64, max_frames: usize) -> Sampling {
    Sampling {
        interval,
        max_frames,
        ..Sampling::default()
    }
}

/// The single colour of a frame, asserting every pixel has it exactly.
fn solid(frame: &Frame) -> [u8; 3] {
    let rgb = frame.image.to_rgb().into_raw();
    let first = [rgb[0], rgb[1], rgb[2]];
    assert!(
        rgb.chunks_exact(3).all(|p| p == first),
        "frame at {} is not one solid colour",
        frame.time
    );
    first
}

fn err_text<T: std::fmt::Debug>(r: Result<T, VideoError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn colors_exact_values_and_times_at_1_half_and_2_seconds() {
    let ff = ff();
    let path = fixture("colors.mkv");
    let info = ff.probe(&path).unwrap();
    assert_eq!(
        (info.width, info.height, info.codec.as_str()),
        (64, 48, "ffv1")
    );
    assert!((info.duration - 6.4).abs() < 1e-6, "{}", info.duration);
    let colors = colors();
    assert_eq!(colors.len(), 7);
    // 1.98: ticks 0.99, 2.97, 4.95 fall just before a colour starts, so
    // taking the frame *nearest* t (or the next one) would be caught.
    for (interval, expected) in [(1.0, 6), (0.5, 13), (2.0, 3), (1.98, 3)] {
        let frames = all_frames(&ff, &path, &sampling(interval, 1800)).unwrap();
        assert_eq!(frames.len(), expected, "interval {interval}");
        for (i, f) in frames.iter().enumerate() {
            let want = (i as f64 + 0.5) * interval;
            assert!(
                (f.time - want).abs() < 1e-9,
                "interval {interval}: {} != {want}",
                f.time
            );
        }
        for f in &frames {
            assert_eq!((f.image.width(), f.image.height()), (64, 48));
            // The frame shown at t: colour floor(t). At interval 2 the times
            // 1, 3, 5 are exactly where a colour starts: the frame with
            // pts == t is the one shown (pts <= t), not the one before.
            let second = f.time.floor() as usize;
            assert_eq!(
                solid(f),
                colors[second],
                "interval {interval}, t = {}",
                f.time
            );
        }
    }
}

#[test]
fn long_videos_widen_the_interval_to_max_frames() {
    let ff = ff();
    let frames = all_frames(&ff, &fixture("colors.mkv"), &sampling(0.5, 4)).unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f.time).collect();
    // 6.4 s / 4 = 1.6 s intervals.
    assert_eq!(times, vec![0.8, 2.4, 4.0, 5.6]);
    let colors = colors();
    let got: Vec<[u8; 3]> = frames.iter().map(solid).collect();
    assert_eq!(got, vec![colors[0], colors[2], colors[4], colors[5]]);
}

#[test]
fn a_video_shorter_than_the_interval_gives_one_frame_in_the_middle() {
    let ff = ff();
    let frames = all_frames(&ff, &fixture("colors.mkv"), &sampling(10.0, 1800)).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].time, 3.2);
    assert_eq!(solid(&frames[0]), colors()[3]);
}

#[test]
fn h264_mp4_rotated_and_webm() {
    let ff = ff();
    let clip = ff.probe(&fixture("clip.mp4")).unwrap();
    assert_eq!(
        (clip.width, clip.height, clip.codec.as_str()),
        (96, 64, "h264")
    );
    assert!((clip.duration - 5.0).abs() < 0.05, "{}", clip.duration);
    let frames = all_frames(&ff, &fixture("clip.mp4"), &sampling(1.0, 1800)).unwrap();
    assert_eq!(frames.len(), 5);
    assert!(frames
        .iter()
        .all(|f| (f.image.width(), f.image.height()) == (96, 64)));

    let rotated = ff.probe(&fixture("rotated.mp4")).unwrap();
    assert_eq!((rotated.width, rotated.height), (64, 96));
    let frames = all_frames(&ff, &fixture("rotated.mp4"), &sampling(2.0, 1800)).unwrap();
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert_eq!((f.image.width(), f.image.height()), (64, 96));
    }
    // Upright means turned: the rotated frame is the plain one transposed
    // (one way or the other), so its pixels are a permutation of them.
    let plain = &all_frames(&ff, &fixture("clip.mp4"), &sampling(2.0, 1800)).unwrap()[0];
    let turned = &frames[0];
    let (a, b) = (plain.image.to_rgb(), turned.image.to_rgb());
    let cw = (0..64u32).all(|y| (0..96u32).all(|x| a.get_pixel(x, y) == b.get_pixel(63 - y, x)));
    let ccw = (0..64u32).all(|y| (0..96u32).all(|x| a.get_pixel(x, y) == b.get_pixel(y, 95 - x)));
    assert!(
        cw || ccw,
        "the rotated frame is not a quarter turn of the plain one"
    );

    let webm = ff.probe(&fixture("clip.webm")).unwrap();
    assert_eq!(
        (webm.width, webm.height, webm.codec.as_str()),
        (96, 64, "vp9")
    );
    let frames = all_frames(&ff, &fixture("clip.webm"), &sampling(1.0, 1800)).unwrap();
    assert_eq!(
        frames.iter().map(|f| f.time).collect::<Vec<_>>(),
        vec![0.5, 1.5, 2.5]
    );
}

#[test]
fn truncated_mp4_gives_the_frames_before_the_cut() {
    let ff = ff();
    let path = fixture("truncated.mp4");
    // The index (moov) is at the front, so the file still claims 5 s.
    let info = ff.probe(&path).unwrap();
    assert!((info.duration - 5.0).abs() < 0.05);
    let frames = all_frames(&ff, &path, &sampling(0.5, 1800)).unwrap();
    assert!(
        !frames.is_empty() && frames.len() < 10,
        "{} frames from half a file",
        frames.len()
    );
    assert!(frames.iter().all(|f| f.image.width() == 96));
}

#[test]
fn files_that_are_not_videos_are_named_with_the_cause() {
    let ff = ff();
    let cases = [
        ("audio-only.m4a", "has no video stream"),
        ("not-a-video.mp4", "not a video ffmpeg can read: "),
        ("empty.mp4", "is empty (0 bytes)"),
    ];
    for (name, cause) in cases {
        let path = fixture(name);
        let shown = path.display().to_string();
        let e = err_text(ff.probe(&path));
        assert!(e.contains(cause), "{name}: {e}");
        assert_eq!(e.matches(&shown).count(), 1, "the path once: {e}");
        // frames() on its own (without a successful probe) says the same.
        let info = seer_video::VideoInfo {
            duration: 1.0,
            width: 1,
            height: 1,
            codec: String::new(),
            taken_at: None,
        };
        let e = err_text(ff.frames(&path, &info, &Sampling::default(), &mut |_| true));
        assert!(e.contains(cause), "{name} frames: {e}");
        assert_eq!(e.matches(&shown).count(), 1, "the path once: {e}");
    }
    let e = err_text(ff.probe(&fixture("not-a-video.mp4")));
    assert!(
        e.ends_with("Invalid data found when processing input"),
        "{e}"
    );
}

#[test]
fn missing_file_and_folder() {
    let ff = ff();
    let missing = fixture("no-such-video.mp4");
    let e = err_text(ff.probe(&missing));
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("No such file"),
        "{e}"
    );
    let dir = fixture("");
    let e = err_text(ff.probe(&dir));
    assert!(e.contains("is a folder, not a video"), "{e}");
    let e = err_text(ff.frame_at(&dir, 1.0, &FrameLimits::default()));
    assert!(e.contains("is a folder, not a video"), "{e}");
}

#[test]
fn odd_file_names() {
    let ff = ff();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<std::ffi::OsString> = vec![
        "with spaces.mp4".into(),
        "http:colon.mp4".into(),
        "-i.mp4".into(),
        std::ffi::OsStr::from_bytes(b"bad-\xff\xfe-utf8.mp4").to_owned(),
    ];
    for name in names {
        let path = dir.path().join(&name);
        std::fs::copy(fixture("clip.mp4"), &path).unwrap();
        let info = ff.probe(&path).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(info.width, 96);
        let frames = all_frames(&ff, &path, &sampling(2.0, 1800)).unwrap();
        // 5 s at 2 s: times 1 and 3 (5 is the end, not inside).
        assert_eq!(frames.len(), 2, "{name:?}");
        ff.frame_at(&path, 1.0, &FrameLimits::default()).unwrap();
    }
    // A relative name starting with a dash, resolved against the cwd.
    let rel = Path::new("-not-an-option.mp4");
    let e = err_text(ff.probe(rel));
    assert!(e.contains("No such file"), "{e}");
}

/// A FIFO the playlist points at: opening it for reading is what "reading
/// the target" would take first, and the writer side notices.
#[test]
fn playlist_named_mp4_is_refused_without_reading_its_target() {
    let ff = ff();
    let e = err_text(ff.probe(&fixture("playlist.mp4")));
    assert!(e.contains("is not a video container seer opens"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.ts");
    let ok = std::process::Command::new("mkfifo")
        .arg(&target)
        .status()
        .unwrap();
    assert!(ok.success());
    let playlist = dir.path().join("playlist.mp4");
    std::fs::write(
        &playlist,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:{}\n#EXT-X-ENDLIST\n",
            target.display()
        ),
    )
    .unwrap();
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (target, opened) = (target.clone(), opened.clone());
        std::thread::spawn(move || {
            // Blocks until someone opens the FIFO for reading.
            let _f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap();
            opened.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let e = err_text(ff.probe(&playlist));
    assert!(e.contains("is not a video container seer opens"), "{e}");
    let info = seer_video::VideoInfo {
        duration: 10.0,
        width: 1,
        height: 1,
        codec: String::new(),
        taken_at: None,
    };
    let e = err_text(ff.frames(&playlist, &info, &Sampling::default(), &mut |_| true));
    assert!(e.contains("is not a video container seer opens"), "{e}");
    let read_by_ffmpeg = opened.load(std::sync::atomic::Ordering::SeqCst);
    // Release the writer thread ourselves.
    drop(std::fs::File::open(&target).unwrap());
    writer.join().unwrap();
    assert!(!read_by_ffmpeg, "ffmpeg opened the playlist's target");
}

#[test]
fn frame_at_start_middle_past_the_end_and_negative() {
    let ff = ff();
    let path = fixture("colors.mkv");
    let colors = colors();
    let limits = FrameLimits::default();
    for (t, color, time) in [
        (0.0, 0, 0.0),
        (2.0, 2, 2.0),
        (3.5, 3, 3.5),
        (1.99, 1, 1.99),
        (100.0, 6, 6.399),
        (-5.0, 0, 0.0),
        (f64::NAN, 0, 0.0),
    ] {
        let f = ff
            .frame_at(&path, t, &limits)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(solid(&f), colors[color], "t = {t}");
        assert!((f.time - time).abs() < 1e-9, "t = {t}: {}", f.time);
        assert_eq!((f.image.width(), f.image.height()), (64, 48));
    }
    let f = ff.frame_at(&fixture("rotated.mp4"), 2.5, &limits).unwrap();
    assert_eq!((f.image.width(), f.image.height()), (64, 96));
}

#[test]
fn unknown_duration_samples_until_the_stream_ends() {
    let ff = ff();
    let path = fixture("no-duration.webm");
    let info = ff.probe(&path).unwrap();
    assert_eq!((info.duration, info.width, info.height), (0.0, 32, 24));
    // About 1 s of video (pts 0.007 to 1.007): ticks 0.25 and 0.75 are
    // in it, 1.25 is past its end.
    let frames = all_frames(&ff, &path, &sampling(0.5, 1800)).unwrap();
    assert_eq!(
        frames.iter().map(|f| f.time).collect::<Vec<_>>(),
        vec![0.25, 0.75]
    );
    // max_frames still caps it.
    assert_eq!(all_frames(&ff, &path, &sampling(0.5, 1)).unwrap().len(), 1);
    // No tick inside the video at all: one frame, its first, at 0 s.
    let frames = all_frames(&ff, &path, &sampling(10.0, 1800)).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].time, 0.0);
    assert_eq!(
        (frames[0].image.width(), frames[0].image.height()),
        (32, 24)
    );
}

#[test]
fn a_container_longer_than_its_video() {
    let ff = ff();
    let path = fixture("short-video.mkv");
    let info = ff.probe(&path).unwrap();
    assert!(info.duration > 2.9, "{}", info.duration);
    let frames = all_frames(&ff, &path, &sampling(1.0, 1800)).unwrap();
    assert_eq!(frames.iter().map(|f| f.time).collect::<Vec<_>>(), vec![0.5]);
    assert_eq!(solid(&frames[0]), [0, 255, 0]);
    // Past the video's end a player keeps showing its last frame.
    let f = ff.frame_at(&path, 2.5, &FrameLimits::default()).unwrap();
    assert_eq!(solid(&f), [0, 255, 0]);
    assert_eq!(f.time, 2.5);
}

#[test]
fn frames_over_the_pixel_limit_are_refused() {
    let ff = ff();
    let s = Sampling {
        limits: FrameLimits {
            max_pixels: 96 * 64 - 1,
            stall_seconds: 120,
        },
        ..Sampling::default()
    };
    let e = err_text(all_frames(&ff, &fixture("clip.mp4"), &s));
    assert!(e.contains("frame of 96x64 pixels is over the limit"), "{e}");
}

#[test]
fn extensions_are_case_insensitive() {
    assert!(has_video_extension(Path::new("a/b/IMG_0001.MOV")));
    assert!(!has_video_extension(Path::new("a/b/IMG_0001.HEIC")));
}

// ---- fake ffmpeg scripts -------------------------------------------------

/// Writes `dir/ffmpeg` and `dir/ffprobe` shell scripts: `-version` succeeds;
/// otherwise each writes its pid to `dir/NAME.pid` and runs `body`.
fn fake(dir: &Path, ffmpeg_body: &str, ffprobe_body: &str) -> PathBuf {
    for (name, body) in [("ffmpeg", ffmpeg_body), ("ffprobe", ffprobe_body)] {
        let path = dir.join(name);
        let pid = dir.join(format!("{name}.pid"));
        seer_testkit::write_script(
            &path,
            &format!(
                "#!/bin/sh\ncase \"$1\" in -version) echo fake; exit 0;; esac\n\
                 echo $$ > '{}'\n{body}\n",
                pid.display()
            ),
        );
    }
    dir.join("ffmpeg")
}

/// The pid a fake program wrote; panics if it never ran.
fn pid_of(dir: &Path, name: &str) -> u32 {
    let text = std::fs::read_to_string(dir.join(format!("{name}.pid"))).unwrap();
    text.trim().parse().unwrap()
}

/// Whether `pid` still exists (running or a zombie not yet reaped).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn real(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn clip_info() -> seer_video::VideoInfo {
    seer_video::VideoInfo {
        duration: 5.0,
        width: 96,
        height: 64,
        codec: "h264".into(),
        taken_at: None,
    }
}

#[test]
fn stall_watchdog_kills_a_silent_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    // `exec` so the pid written is the process that sleeps.
    let ffmpeg = fake(
        dir.path(),
        "echo 'about to hang' >&2\nexec sleep 60",
        "exec sleep 60",
    );
    let ff = Ffmpeg::find(Some(&ffmpeg)).unwrap();
    let s = Sampling {
        limits: FrameLimits {
            max_pixels: 1 << 30,
            stall_seconds: 1,
        },
        ..Sampling::default()
    };
    let e = err_text(ff.frames(&fixture("clip.mp4"), &clip_info(), &s, &mut |_| true));
    assert!(
        e.contains("ffmpeg stopped after 1 s without a frame"),
        "{e}"
    );
    assert!(e.contains("about to hang"), "{e}");
    assert!(
        !alive(pid_of(dir.path(), "ffmpeg")),
        "the stalled ffmpeg was left running"
    );
    // ffprobe stalls are caught too (frame_at probes first).
    let e = err_text(ff.frame_at(&fixture("clip.mp4"), 1.0, &s.limits));
    assert!(e.contains("stopped after 1 s"), "{e}");
    assert!(!alive(pid_of(dir.path(), "ffprobe")));
}

#[test]
fn missing_programs_say_to_install_ffmpeg() {
    let e = Ffmpeg::find(Some(Path::new("/nonexistent/bin/ffmpeg"))).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, VideoError::NoFfmpeg { .. }));
    assert!(text.contains("/nonexistent/bin/ffmpeg"), "{text}");
    assert!(
        text.contains("install ffmpeg") && text.contains("apt install ffmpeg"),
        "{text}"
    );
    // ffmpeg present but no ffprobe beside it.
    let dir = tempfile::tempdir().unwrap();
    let ffmpeg = fake(dir.path(), "exit 0", "exit 0");
    std::fs::remove_file(dir.path().join("ffprobe")).unwrap();
    let text = Ffmpeg::find(Some(&ffmpeg)).unwrap_err().to_string();
    assert!(
        text.contains("ffprobe") && text.contains("install ffmpeg"),
        "{text}"
    );
    // Present but broken.
    let ffmpeg = fake(dir.path(), "exit 0", "exit 0");
    std::fs::write(&ffmpeg, "#!/bin/sh\nexit 3\n").unwrap();
    let text = Ffmpeg::find(Some(&ffmpeg)).unwrap_err().to_string();
    assert!(
        text.contains("-version") && text.contains("install ffmpeg"),
        "{text}"
    );
}

/// A fake ffmpeg that records its pid and then runs the real one.
fn recording_real_ffmpeg(dir: &Path) -> Ffmpeg {
    let (Some(ffmpeg), Some(ffprobe)) = (real("ffmpeg"), real("ffprobe")) else {
        panic!("this test needs ffmpeg and ffprobe on PATH: install ffmpeg (e.g. `apt install ffmpeg`)");
    };
    let path = fake(
        dir,
        &format!("exec '{}' \"$@\"", ffmpeg.display()),
        &format!("exec '{}' \"$@\"", ffprobe.display()),
    );
    Ffmpeg::find(Some(&path)).unwrap()
}

#[test]
fn early_stop_kills_and_reaps_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let ff = recording_real_ffmpeg(dir.path());
    let path = fixture("colors.mkv");
    let info = ff.probe(&path).unwrap();
    let mut seen = 0;
    let n = ff
        .frames(&path, &info, &sampling(0.5, 1800), &mut |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
    assert_eq!((n, seen), (2, 2));
    assert!(
        !alive(pid_of(dir.path(), "ffmpeg")),
        "ffmpeg left running or unreaped"
    );
}

#[test]
fn a_panicking_callback_still_kills_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let ff = recording_real_ffmpeg(dir.path());
    let path = fixture("colors.mkv");
    let info = ff.probe(&path).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ff.frames(&path, &info, &sampling(0.5, 1800), &mut |_| {
            panic!("callback panics")
        })
    }));
    assert!(result.is_err());
    assert!(
        !alive(pid_of(dir.path(), "ffmpeg")),
        "ffmpeg left running after a panic"
    );
}

#[test]
fn finished_runs_leave_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let ff = recording_real_ffmpeg(dir.path());
    let path = fixture("clip.mp4");
    let info = ff.probe(&path).unwrap();
    assert!(!alive(pid_of(dir.path(), "ffprobe")));
    let n = ff
        .frames(&path, &info, &Sampling::default(), &mut |_| true)
        .unwrap();
    assert_eq!(n, 2);
    assert!(!alive(pid_of(dir.path(), "ffmpeg")));
    // An error path too.
    let _ = ff.frames(
        &fixture("not-a-video.mp4"),
        &info,
        &Sampling::default(),
        &mut |_| true,
    );
    assert!(!alive(pid_of(dir.path(), "ffmpeg")));
}

/// Not a test on its own: the process that
/// `ffmpeg_dies_with_the_process_that_started_it` starts (and kills) runs
/// this, probing through the fake ffprobe in `$SEER_VIDEO_ORPHAN_DIR`.
#[test]
fn orphan_helper() {
    let Some(dir) = std::env::var_os("SEER_VIDEO_ORPHAN_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let ffmpeg = Ffmpeg::find(Some(&dir.join("ffmpeg"))).unwrap();
    let _ = ffmpeg.probe(&dir.join("x.mp4"));
}

/// Running, not a zombie (a killed orphan may wait a while to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// A signal that ends seer runs no destructor: ffmpeg must die with it
/// (Linux: PR_SET_PDEATHSIG) rather than decode on, orphaned.
#[cfg(target_os = "linux")]
#[test]
fn ffmpeg_dies_with_the_process_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    fake(dir.path(), "exec sleep 1000", "exec sleep 1000");
    std::fs::write(dir.path().join("x.mp4"), b"not a video").unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphan_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SEER_VIDEO_ORPHAN_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("ffprobe.pid");
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|t| t.ends_with('\n'))
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            helper.try_wait().unwrap().is_none(),
            "the helper ended before ffprobe ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(running(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    // The kernel signals it as its parent dies; the wait only absorbs the
    // scheduling of a loaded machine.
    let gone = (0..3000).any(|_| {
        let gone = !running(pid);
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        gone
    });
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(gone, "ffprobe {pid} outlived the process that started it");
}

/// What seer opened is decoded, not whatever its path names by then:
/// colors.mkv is opened, then its path is replaced (another video renamed
/// over it, a text file, a symlink to another video), and the probe, the
/// sampled frames and a frame at t are still colors.mkv's.
#[test]
fn an_open_file_is_decoded_whatever_its_path_names_by_then() {
    let ff = ff();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("video.mkv");
    std::fs::copy(fixture("colors.mkv"), &path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let colors = colors();
    let swap = dir.path().join("swap");
    let replacements: [&dyn Fn(); 3] = [
        &|| std::fs::copy(fixture("clip.mp4"), &swap).map(drop).unwrap(),
        &|| std::fs::write(&swap, b"not a video").unwrap(),
        &|| std::os::unix::fs::symlink(fixture("clip.mp4"), &swap).unwrap(),
    ];
    for (i, replace) in replacements.iter().enumerate() {
        replace();
        std::fs::rename(&swap, &path).unwrap();
        let info = ff.probe_file(&path, &file).unwrap();
        assert!((info.duration - 6.4).abs() < 1e-6, "{i}: {info:?}");
        assert_eq!((info.width, info.height), (64, 48), "{i}");
        let mut got = Vec::new();
        let n = ff
            .frames_of_file(&path, &file, &info, &sampling(1.0, 1800), &mut |f| {
                got.push((f.time, solid(&f)));
                true
            })
            .unwrap();
        // Times 0.5 .. 5.5: colour floor(t).
        let want: Vec<(f64, [u8; 3])> = (0..6).map(|s| (s as f64 + 0.5, colors[s])).collect();
        assert_eq!((n, got), (6, want), "{i}");
        let frame = ff
            .frame_at_file(&path, &file, 3.5, &FrameLimits::default())
            .unwrap();
        assert_eq!(solid(&frame), colors[3], "{i}");
    }
    // The path itself names the replacement: another video, 96 wide.
    assert_eq!(ff.probe(&path).unwrap().width, 96);
}

/// An MP4 with its index (moov) after the media makes ffmpeg seek back over
/// the whole file: the open file is given as `file:/dev/fd/N`, which can
/// seek (through a pipe this file does not decode), and decodes after its
/// path is gone.
#[test]
fn an_open_mp4_with_its_index_at_the_end_decodes() {
    let ff = ff();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index-last.mp4");
    // Large enough (about 400 KB) that the index is far past ffmpeg's read
    // buffer; the mp4 muxer without +faststart writes the index last.
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=25:duration=10")
        .args(["-c:v", "mpeg4", "-q:v", "2", "-f", "mp4"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&path).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(
        at(b"moov") > at(b"mdat") && at(b"moov") > 100_000,
        "the index is not at the end"
    );
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let info = ff.probe_file(&path, &file).unwrap();
    assert!((info.duration - 10.0).abs() < 0.05, "{info:?}");
    let mut times = Vec::new();
    ff.frames_of_file(&path, &file, &info, &sampling(4.0, 1800), &mut |f| {
        assert_eq!((f.image.width(), f.image.height()), (320, 240));
        times.push(f.time);
        true
    })
    .unwrap();
    assert_eq!(times, vec![2.0, 6.0]);
    let frame = ff
        .frame_at_file(&path, &file, 9.0, &FrameLimits::default())
        .unwrap();
    assert_eq!(frame.image.width(), 320);
}

/// Sets `cancel` once `dir/NAME.pid` exists (the fake program runs) and
/// 200 ms more have passed.
fn cancel_when_running(dir: &Path, name: &str, cancel: &seer_video::Cancel) {
    let pid = dir.join(format!("{name}.pid"));
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        while !pid.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        cancel.cancel();
    });
}

#[test]
fn a_cancelled_frame_at_kills_ffmpeg_long_before_the_stall_limit() {
    let Some(ffprobe) = real("ffprobe") else {
        panic!("this test needs ffprobe on PATH: install ffmpeg (e.g. `apt install ffmpeg`)");
    };
    let dir = tempfile::tempdir().unwrap();
    // The real ffprobe, so that the call goes on to an ffmpeg that never
    // writes a frame.
    let ffmpeg = fake(
        dir.path(),
        "exec sleep 60",
        &format!("exec '{}' \"$@\"", ffprobe.display()),
    );
    let ff = Ffmpeg::find(Some(&ffmpeg)).unwrap();
    let limits = FrameLimits {
        max_pixels: 1 << 30,
        stall_seconds: 60,
    };
    let path = fixture("clip.mp4");
    let file = std::fs::File::open(&path).unwrap();
    let cancel = seer_video::Cancel::new();
    cancel_when_running(dir.path(), "ffmpeg", &cancel);
    let started = std::time::Instant::now();
    let r = ff.frame_at_file_cancellable(&path, &file, 1.0, &limits, &cancel);
    // Not a speed limit: the stall limit (60 s) would end it otherwise.
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    let e = r.expect_err("a cancelled call gives no frame");
    assert!(matches!(e, VideoError::Cancelled { .. }), "{e}");
    assert!(e.to_string().contains("clip.mp4"), "{e}");
    assert!(
        !alive(pid_of(dir.path(), "ffmpeg")),
        "the cancelled ffmpeg was left running"
    );

    // Cancelled while ffprobe runs (frame_at probes first): it is killed
    // too, and no ffmpeg starts.
    let dir = tempfile::tempdir().unwrap();
    let ffmpeg = fake(dir.path(), "exec sleep 60", "exec sleep 60");
    let ff = Ffmpeg::find(Some(&ffmpeg)).unwrap();
    let cancel = seer_video::Cancel::new();
    cancel_when_running(dir.path(), "ffprobe", &cancel);
    let started = std::time::Instant::now();
    let r = ff.frame_at_file_cancellable(&path, &file, 1.0, &limits, &cancel);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(
        matches!(r, Err(VideoError::Cancelled { .. })),
        "{:?}",
        r.err()
    );
    assert!(!alive(pid_of(dir.path(), "ffprobe")));
    assert!(!dir.path().join("ffmpeg.pid").exists());

    // Already cancelled: nothing is started.
    let r = ff.frame_at_file_cancellable(&path, &file, 1.0, &limits, &cancel);
    assert!(matches!(r, Err(VideoError::Cancelled { .. })));
}
