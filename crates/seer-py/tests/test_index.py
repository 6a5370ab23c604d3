"""``seer.Index``: searches equal ``seer search --json`` on an index the command
line made (the tiny CLIP fixture, captions by the tiny BLIP fixture), and what
it refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import List

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from conftest import CLIP_OPENCLIP, REPO, SEER_BIN, SMOKE, TOKENIZER

import seer

CAPTION = REPO / "fixtures" / "blip" / "caption-tiny"
RETRIEVAL = REPO / "fixtures" / "blip" / "retrieval-tiny"
PHOTOS = SMOKE / "skimage"


def run(*args: object) -> str:
    out = subprocess.run(
        [str(SEER_BIN), *map(str, args)],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "SEER_TOKENIZER": str(TOKENIZER)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def cli_search(index: Path, *args: object) -> List[dict]:
    lines = run("search", "--index", index, *args, "--json").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = tmp_path_factory.mktemp("photos")
    for f in PHOTOS.iterdir():
        if f.suffix in (".png", ".jpg"):
            shutil.copy(f, photos / f.name)
    index = tmp_path_factory.mktemp("index")
    run("index", "--index", index, "--model", CLIP_OPENCLIP, "--caption-model", CAPTION, photos)
    return index


@pytest.fixture(scope="module")
def index(index_dir: Path) -> seer.Index:
    return seer.Index(index_dir, tokenizer=TOKENIZER, offline=True)


def same(hits: List[seer.Hit], lines: List[dict]) -> None:
    """Hits as ``seer search --json`` printed them (f32 values compared as f32)."""
    assert len(hits) == len(lines) > 0
    for hit, line in zip(hits, lines):
        assert hit.path == line["path"]
        for field in ("score", "fused", "bm25"):
            value, expected = getattr(hit, field), line.get(field)
            if expected is None:
                assert value is None, field
            else:
                assert np.float32(value) == np.float32(expected), field
        assert hit.caption == line.get("caption")
        assert hit.time == line.get("time")
        assert list(hit.matched) == line.get("matched", ["vector"])
        for field in ("itm_probability", "itc_similarity"):
            value, expected = getattr(hit, field), line.get(field)
            assert (value is None) == (expected is None), field
            assert value is None or np.float32(value) == np.float32(expected), field


def test_the_index_as_the_command_line_made_it(index: seer.Index, index_dir: Path) -> None:
    assert len(index) == 8
    assert [(m.name, m.dim, m.vectors) for m in index.models] == [(str(CLIP_OPENCLIP), 16, 8)]
    assert Path(index.path) == index_dir.resolve()


@pytest.mark.parametrize(
    "kwargs, flags",
    [
        ({"text": "a rocket"}, ["a rocket"]),
        ({"text": "a rocket", "mode": "vector", "k": 3}, ["a rocket", "--mode", "vector", "-k", 3]),
        ({"text": "a cat", "min_score": -0.05}, ["a cat", "--min-score", -0.05]),
        ({"text": "a cat", "path": "*.jpg"}, ["a cat", "--path", "*.jpg"]),
        ({"text": "a cat", "subtract": ["a dog"]}, ["a cat", "--subtract", "a dog"]),
        ({"text": "fro", "mode": "words"}, ["fro", "--mode", "words"]),
        ({"text": "fro baseball", "mode": "hybrid"}, ["fro baseball", "--mode", "hybrid"]),
    ],
)
def test_searches_equal_seer_search_json(
    index: seer.Index, index_dir: Path, kwargs: dict, flags: list
) -> None:
    same(index.search(**kwargs), cli_search(index_dir, *flags))


def test_images_and_indexed_files_query_as_on_the_command_line(
    index: seer.Index, index_dir: Path
) -> None:
    example = SMOKE / "misc" / "red_apple.jpg"
    same(index.search(images=[example]), cli_search(index_dir, "--image", example))
    indexed = next(p for p in Path(index.search("a cat")[0].path).parent.iterdir())
    hits = index.search(like=[indexed], k=4)
    same(hits, cli_search(index_dir, "--like", indexed, "-k", 4))
    assert str(indexed) not in [h.path for h in hits]  # not a result of its own query


def test_a_search_sees_the_index_s_latest_run(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    opened = seer.Index(copy, tokenizer=TOKENIZER, offline=True)
    assert len(opened) == 8
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(SMOKE / "misc" / "red_apple.jpg", more / "apple.jpg")
    run("index", "--index", copy, more)
    assert len(opened) == 9
    assert str(more / "apple.jpg") in [h.path for h in opened.search("an apple", k=9)]


def test_bad_searches_are_refused_clearly(index: seer.Index, tmp_path: Path) -> None:
    with pytest.raises(seer.SeerError, match="nothing to search for"):
        index.search()
    with pytest.raises(seer.SeerError, match="unknown mode 'fuzzy'"):
        index.search("a cat", mode="fuzzy")
    with pytest.raises(seer.SeerError, match="k must be at least 1"):
        index.search("a cat", k=0)
    with pytest.raises(seer.SeerError, match=r"min_score \(a cosine similarity\) must be -1 to 1"):
        index.search("a cat", min_score=2)
    with pytest.raises(seer.SeerError, match="a words search has none of"):
        index.search("fro", mode="words", min_score=0.1)
    with pytest.raises(seer.SeerError, match=r"text\[0\] is empty"):
        index.search(" ")
    with pytest.raises(TypeError, match="images: pass a list of paths"):
        index.search(images="cat.jpg")
    with pytest.raises(seer.SeerError, match="missing.jpg"):
        index.search(images=[tmp_path / "missing.jpg"])
    with pytest.raises(seer.SeerError):
        seer.Index(tmp_path / "no-index-here")
    with pytest.raises(seer.SeerError, match="other-model"):
        seer.Index(index.path, model="other-model")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="indexing a video needs ffmpeg")
def test_a_video_is_found_by_its_best_frame_as_on_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(REPO / "fixtures" / "video" / "clip.mp4", folder / "clip.mp4")
    shutil.copy(PHOTOS / "rocket.jpg", folder / "rocket.jpg")
    index_dir = tmp_path / "index"
    run("index", "--index", index_dir, "--model", CLIP_OPENCLIP, "--frame-interval", 0.5, folder)
    hits = seer.Index(index_dir, tokenizer=TOKENIZER, offline=True).search("a red square")
    same(hits, cli_search(index_dir, "a red square"))
    video = [h for h in hits if h.path.endswith("clip.mp4")]
    assert len(video) == 1 and video[0].time is not None


def test_rerank_orders_the_best_hits_as_seer_search_rerank(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(PHOTOS, photos, ignore=shutil.ignore_patterns("*.jsonl"))
    index_dir = tmp_path / "index"
    run("index", "--index", index_dir, "--model", CLIP_OPENCLIP, photos)
    index = seer.Index(index_dir, tokenizer=TOKENIZER, offline=True)
    matcher = seer.Model(RETRIEVAL, offline=True, batch_size=3)
    hits = index.search("a cat on a sofa", k=6, rerank=matcher, rerank_depth=4)
    flags = ("--rerank", RETRIEVAL, "--rerank-depth", 4, "-k", 6, "--batch-size", 3)
    same(hits, cli_search(index_dir, "a cat on a sofa", *flags))
    assert [h.itm_probability is not None for h in hits] == [True] * 4 + [False] * 2
    # A photo gone since indexing keeps no score, follows the reranked ones, and is named.
    gone = Path(hits[0].path)
    gone.unlink()
    with pytest.warns(UserWarning, match=f"{gone.name}.*not reranked"):
        again = index.search("a cat on a sofa", k=6, rerank=matcher, rerank_depth=4)
    assert again[3].path == str(gone) and again[3].itm_probability is None
    with pytest.raises(seer.SeerError, match="rerank needs a text query"):
        index.search(like=[hits[1].path], rerank=matcher)
    with pytest.raises(seer.SeerError, match="no image-text matching head"):
        index.search("a cat", rerank=seer.Model(CAPTION, offline=True))
    with pytest.raises(seer.SeerError, match="rerank_depth must be 1 to 100"):
        index.search("a cat", rerank=matcher, rerank_depth=0)


def cli_dupes(index: Path, *args: object) -> List[dict]:
    return [json.loads(line) for line in run("dupes", "--index", index, *args, "--json").splitlines()]


def same_groups(groups: List[seer.DuplicateGroup], lines: List[dict]) -> None:
    """Groups as ``seer dupes --json`` printed them (f32 scores compared as f32)."""
    assert [list(g.paths) for g in groups] == [line["paths"] for line in lines]
    for group, line in zip(groups, lines):
        assert [np.float32(s) for s in group.scores] == [np.float32(s) for s in line["scores"]]


@pytest.fixture(scope="module")
def with_copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the photos and two near-copies: the rocket halved, the cat
    re-saved as a JPEG."""
    photos = tmp_path_factory.mktemp("photos")
    shutil.copytree(PHOTOS, photos, ignore=shutil.ignore_patterns("*.jsonl"), dirs_exist_ok=True)
    with Image.open(PHOTOS / "rocket.jpg") as im:
        im.resize((im.width // 2, im.height // 2)).save(photos / "rocket-small.png")
    with Image.open(PHOTOS / "chelsea.png") as im:
        im.convert("RGB").save(photos / "chelsea-copy.jpg", quality=85)
    index = tmp_path_factory.mktemp("index")
    run("index", "--index", index, "--model", CLIP_OPENCLIP, photos)
    return index


def test_duplicates_at_a_threshold_equal_seer_dupes_json(with_copies: Path) -> None:
    index = seer.Index(with_copies, offline=True)
    for threshold in (0.9, 0.99, -1.0):
        groups = index.duplicates(threshold)
        same_groups(groups, cli_dupes(with_copies, "--threshold", threshold))
        assert all(g.scores[0] == pytest.approx(1.0, abs=1e-3) for g in groups)
    # Below the ANN threshold there is no graph: exact or not, every pair is compared.
    assert index.duplicates(0.9, exact=True) == index.duplicates(0.9)
    pairs = {frozenset(Path(p).name for p in g.paths) for g in index.duplicates(0.99)}
    assert frozenset({"rocket.jpg", "rocket-small.png"}) in pairs
    # At -1 every file is within reach of its 3 nearest: one group of all ten.
    (everything,) = index.duplicates(-1.0, neighbours=3)
    assert len(everything.paths) == 10


def test_the_duplicate_threshold_is_measured_remembered_and_shared_with_seer_dupes(
    with_copies: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "index"
    shutil.copytree(with_copies, copy)
    index = seer.Index(copy, tokenizer=TOKENIZER, offline=True)
    measured = index.duplicate_threshold()
    assert (measured.photos, measured.copies, measured.distinct_pairs) == (10, 30, 45)
    assert measured.threshold <= measured.copies_median <= 1.0
    assert 0 <= measured.distinct_above <= 45 and measured.distinct_max <= 1.0
    # Remembered: seer dupes uses it without measuring, and so does the next call.
    out = subprocess.run(
        [str(SEER_BIN), "dupes", "--index", str(copy), "--json"],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "catches 99%" not in out.stderr
    assert f"at threshold {measured.threshold:.4f}" in out.stderr
    same_groups(index.duplicates(), [json.loads(line) for line in out.stdout.splitlines()])
    assert index.duplicate_threshold() == measured
    # Measured again (calibrate), by seer dupes --calibrate: Python reads that one.
    out = subprocess.run(
        [str(SEER_BIN), "dupes", "--index", str(copy), "--calibrate", "--sample", "4"],
        capture_output=True, text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "SEER_TOKENIZER": str(TOKENIZER)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    again = index.duplicate_threshold()
    assert (again.photos, again.copies) == (4, 12)
    assert f"threshold {again.threshold:.4f}: catches 99% of 12 altered copies of 4 photos" in out.stderr
    assert index.duplicate_threshold(calibrate=True, sample=100) == measured


def test_a_threshold_that_cannot_be_measured_says_why(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTOS / "rocket.jpg", photos / "rocket.jpg")
    shutil.copy(PHOTOS / "horse.png", photos / "horse.png")
    index_dir = tmp_path / "index"
    run("index", "--index", index_dir, "--model", CLIP_OPENCLIP, photos)
    shutil.rmtree(photos)
    index = seer.Index(index_dir, tokenizer=TOKENIZER, offline=True)
    with pytest.raises(seer.SeerError, match="none of the 2 sampled photos could be read"):
        index.duplicates()
    assert index.duplicates(0.95) == []  # a threshold given needs no photo


def test_bad_duplicate_requests_are_refused_clearly(index: seer.Index) -> None:
    with pytest.raises(seer.SeerError, match=r"threshold \(a cosine similarity\) must be -1 to 1"):
        index.duplicates(1.5)
    with pytest.raises(seer.SeerError, match="neighbours must be at least 1"):
        index.duplicates(0.9, neighbours=0)
    with pytest.raises(seer.SeerError, match="sample must be at least 1"):
        index.duplicate_threshold(sample=0)
    with pytest.raises(TypeError, match="threshold .* must be a number, got str"):
        index.duplicates("high")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="calibrate must be a bool"):
        index.duplicates(calibrate="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exact must be a bool"):
        index.duplicates(0.9, exact="yes")  # type: ignore[arg-type]


def test_vectors_are_the_index_s_as_seer_export_writes_them(
    index: seer.Index, index_dir: Path, tmp_path: Path
) -> None:
    paths, vectors = index.vectors()
    run("export", "--index", index_dir, "--out", tmp_path / "out")
    exported = np.load(tmp_path / "out" / "img_emb" / "img_emb_0.npy")
    metadata = pq.read_table(tmp_path / "out" / "metadata" / "metadata_0.parquet")
    assert paths == metadata.column("image_path").to_pylist()
    assert vectors.dtype == np.float32 and vectors.shape == (8, 16)
    np.testing.assert_array_equal(vectors, exported)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    # A search by an indexed file scores the others by these vectors.
    hits = index.search(like=[paths[0]], k=7)
    by_path = dict(zip(paths, vectors @ vectors[0]))
    for hit in hits:
        assert hit.score == pytest.approx(by_path[hit.path], abs=2e-3)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="indexing a video needs ffmpeg")
def test_video_frames_in_an_export_are_read_and_written_by_pyarrow_and_numpy(tmp_path: Path) -> None:
    """``frames/frames_0.parquet`` (image_path, time) and ``frames_0.npy`` as
    pyarrow and numpy read them; files they write (f16 rows here) import with
    the frames, and a time that is no time is refused by row."""
    import pyarrow as pa

    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(REPO / "fixtures" / "video" / "clip.mp4", folder / "clip.mp4")
    shutil.copy(PHOTOS / "rocket.jpg", folder / "rocket.jpg")
    run("index", "--index", tmp_path / "index", "--model", CLIP_OPENCLIP, folder)
    out = tmp_path / "out"
    run("export", "--index", tmp_path / "index", "--out", out)
    frames = pq.read_table(out / "frames" / "frames_0.parquet")
    assert frames.schema.field("time").type == pa.float64()
    assert frames.column("time").to_pylist() == [1.0, 3.0]
    assert {Path(p).name for p in frames.column("image_path").to_pylist()} == {"clip.mp4"}
    vectors = np.load(out / "frames" / "frames_0.npy")
    assert vectors.shape == (2, 16) and vectors.dtype == np.float32

    written = tmp_path / "written"
    shutil.copytree(out, written)
    np.save(written / "frames" / "frames_0.npy", vectors.astype(np.float16))
    pq.write_table(frames, written / "frames" / "frames_0.parquet")
    run("import", written, "--index", tmp_path / "copy", "--model", CLIP_OPENCLIP)
    status = json.loads(run("status", "--index", tmp_path / "copy", "--json"))
    assert (status["models"][0]["videos"], status["models"][0]["frames"]) == (1, 2)

    times = frames.column("time").to_pylist()
    times[1] = float("nan")
    pq.write_table(frames.set_column(1, "time", pa.array(times)), written / "frames" / "frames_0.parquet")
    refused = subprocess.run(
        [str(SEER_BIN), "import", str(written), "--index", str(tmp_path / "refused"),
         "--model", str(CLIP_OPENCLIP)],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert refused.returncode == 2
    assert "frames_0.parquet: row 1: time NaN is not a time in seconds" in refused.stderr
