"""The package gives what the command line gives: the same embeddings bit for
bit, the same text embeddings, the same zero-shot classes and probabilities."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CLIP_HF,
    CLIP_OPENCLIP,
    DINOV2,
    MANY_FORMATS,
    REPO,
    RGB_FILES,
    SIGLIP,
    cli_classify,
    cli_embed,
    load,
    same_bits,
)

import seer

MODELS = [CLIP_OPENCLIP, CLIP_HF, SIGLIP, DINOV2]


@pytest.mark.parametrize("model_dir", MODELS, ids=lambda p: p.name)
def test_image_embeddings_equal_seer_embed_bit_for_bit(model_dir: Path, tmp_path: Path) -> None:
    model = load(model_dir)
    expected = cli_embed(model_dir, ["--image", *MANY_FORMATS], tmp_path)
    got = model.embed_images(MANY_FORMATS)
    assert got.shape == (len(MANY_FORMATS), model.dim)
    assert same_bits(got, expected)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_several_batches_equal_seer_embed_with_that_batch_size(tmp_path: Path) -> None:
    """Batches of 4 over 15 files: the last batch is partial, as the CLI's."""
    model = load(CLIP_OPENCLIP, batch_size=4)
    assert model.batch_size == 4
    expected = cli_embed(CLIP_OPENCLIP, ["--image", *MANY_FORMATS], tmp_path, "--batch-size", "4")
    assert same_bits(model.embed_images(MANY_FORMATS), expected)


def test_raw_features_equal_seer_embed_raw(tmp_path: Path) -> None:
    model = load(CLIP_HF)
    expected = cli_embed(CLIP_HF, ["--image", *RGB_FILES], tmp_path, "--raw")
    got = model.embed_images(RGB_FILES, normalize=False)
    assert same_bits(got, expected)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)


def test_paths_bytes_arrays_and_pil_images_give_identical_rows(clip: seer.Model) -> None:
    from PIL import Image

    by_path = clip.embed_images([str(p) for p in RGB_FILES])
    by_pathlike = clip.embed_images(RGB_FILES)
    by_bytes = clip.embed_images([p.read_bytes() for p in RGB_FILES])
    by_bytearray = clip.embed_images([bytearray(p.read_bytes()) for p in RGB_FILES])
    images = [Image.open(p) for p in RGB_FILES]
    by_array = clip.embed_images([np.asarray(im.convert("RGB")) for im in images])
    by_pil = clip.embed_images(images)
    for other in (by_pathlike, by_bytes, by_bytearray, by_array, by_pil):
        assert same_bits(other, by_path)


def test_a_mixed_list_keeps_each_row_in_place(clip: seer.Model) -> None:
    from PIL import Image

    a, b, c, d = RGB_FILES[:4]
    mixed = [
        str(a),
        b.read_bytes(),
        np.asarray(Image.open(c).convert("RGB")),
        Image.open(d),
    ]
    assert same_bits(clip.embed_images(mixed), clip.embed_images([a, b, c, d]))


def test_a_non_contiguous_array_is_read_as_its_values(clip: seer.Model) -> None:
    from PIL import Image

    rgb = np.asarray(Image.open(RGB_FILES[0]).convert("RGB"))
    strided = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)[::2, ::2]
    reversed_channels = np.ascontiguousarray(rgb[:, :, ::-1])[:, :, ::-1]
    fortran = np.asfortranarray(rgb)
    expected = clip.embed_images([rgb])
    for view in (strided, reversed_channels, fortran):
        assert not view.flags.c_contiguous
        assert same_bits(clip.embed_images([view]), expected)
    # A really different view is a different image.
    assert not same_bits(clip.embed_images([rgb[:, ::-1]]), expected)


def test_a_4d_batch_array_is_a_list_of_images(clip: seer.Model) -> None:
    from PIL import Image

    square = [np.asarray(Image.open(p).convert("RGB").resize((64, 48))) for p in RGB_FILES[:3]]
    stacked = np.stack(square)
    assert same_bits(clip.embed_images(stacked), clip.embed_images(square))


@pytest.mark.parametrize("model_dir", [CLIP_OPENCLIP, CLIP_HF, SIGLIP], ids=lambda p: p.name)
def test_text_embeddings_equal_seer_embed_text(model_dir: Path, tmp_path: Path) -> None:
    texts = [
        "a photo of a cat",
        "a dog",
        "",
        "Ünïcödé — 東京の夜景",
        " ".join(["a very long caption"] * 40),  # truncated to the context length
    ]
    model = load(model_dir)
    expected = cli_embed(model_dir, ["--text", *texts], tmp_path)
    got = model.embed_texts(texts)
    assert got.shape == (len(texts), model.dim)
    assert same_bits(got, expected)


def test_raw_text_features_equal_seer_embed_raw(tmp_path: Path) -> None:
    model = load(CLIP_OPENCLIP)
    texts = ["a cat", "a rocket"]
    expected = cli_embed(CLIP_OPENCLIP, ["--text", *texts], tmp_path, "--raw")
    assert same_bits(model.embed_texts(texts, normalize=False), expected)


@pytest.mark.parametrize(
    "model_dir,templates,top_k",
    [
        (CLIP_OPENCLIP, "default", 3),
        (CLIP_HF, "imagenet", 5),
        (SIGLIP, "default", 2),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_classify_equals_seer_classify_json(model_dir: Path, templates: str, top_k: int) -> None:
    labels = ["cat", "rocket", "coffee", "apple", "page of text", "astronaut"]
    model = load(model_dir)
    expected = cli_classify(
        model_dir, MANY_FORMATS, labels, "--templates", templates, "--top-k", str(top_k)
    )
    got = model.classify(MANY_FORMATS, labels, top_k=top_k, templates=templates)
    assert len(got) == len(expected) == len(MANY_FORMATS)
    for predictions, line in zip(got, expected):
        cli = line["predictions"]
        assert len(predictions) == len(cli) == top_k
        for p, q in zip(predictions, cli):
            assert (p.label, p.index) == (q["label"], q["index"])
            # The CLI prints the shortest decimal that reads back as the same f32.
            assert np.float32(p.probability) == np.float32(q["probability"])


def test_classify_with_a_template_list_equals_the_template_file(
    clip: seer.Model, tmp_path: Path
) -> None:
    templates = ["a photo of a {}.", "a drawing of a {}."]
    file = tmp_path / "templates.txt"
    file.write_text("\n".join(templates) + "\n")
    labels = ["cat", "rocket"]
    expected = cli_classify(CLIP_OPENCLIP, RGB_FILES, labels, "--templates", str(file))
    for templates_arg in (templates, file, str(file)):
        got = clip.classify(RGB_FILES, labels, top_k=2, templates=templates_arg)
        probabilities = [[np.float32(p.probability) for p in row] for row in got]
        assert probabilities == [
            [np.float32(q["probability"]) for q in line["predictions"]] for line in expected
        ]


def test_properties(clip: seer.Model) -> None:
    assert clip.dim == 16
    assert clip.family == "clip"
    assert clip.name == str(CLIP_OPENCLIP.resolve())
    assert "clip" in repr(clip)
    assert load(DINOV2).family == "dinov2"
    assert load(SIGLIP).family == "siglip"


def test_the_model_is_immutable(clip: seer.Model) -> None:
    with pytest.raises(AttributeError):
        clip.dim = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        clip.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del clip.dim  # type: ignore[misc]
    assert clip.dim == 16


def test_copy_and_deepcopy_give_the_model_itself(clip: seer.Model) -> None:
    import copy

    assert copy.copy(clip) is clip
    assert copy.deepcopy(clip) is clip
    # Inside a structure too, and the native half alike.
    assert copy.deepcopy({"model": clip})["model"] is clip
    assert copy.copy(clip._native) is clip._native
    assert copy.deepcopy(clip._native) is clip._native


def test_pickling_a_model_is_refused_clearly(clip: seer.Model) -> None:
    import pickle

    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled.*loads its own") as caught:
            pickle.dumps(clip, protocol=protocol)
        assert repr(clip.name) in str(caught.value)


def test_a_model_folder_whose_path_is_not_utf8_loads(clip: seer.Model, tmp_path: Path) -> None:
    import os
    import shutil

    folder = os.path.join(os.fsencode(tmp_path), b"model-\xff\xfe")
    shutil.copytree(CLIP_OPENCLIP, os.fsdecode(folder))
    expected = clip.embed_images(RGB_FILES[:2])
    for spec in (folder, os.fsdecode(folder), Path(os.fsdecode(folder))):
        model = load(spec)  # type: ignore[arg-type]
        assert model.name == os.fsdecode(os.path.realpath(folder))
        assert "model-\\xFF\\xFE" in repr(model)
        assert same_bits(model.embed_images(RGB_FILES[:2]), expected)
    # Its name loads it again.
    assert load(model.name).dim == clip.dim  # type: ignore[arg-type]
    missing = os.path.join(os.fsencode(tmp_path), b"missing-\xff")
    with pytest.raises(seer.SeerError, match="does not exist"):
        load(missing)  # type: ignore[arg-type]
    afile = os.path.join(os.fsencode(tmp_path), b"file-\xff")
    open(afile, "wb").close()
    with pytest.raises(seer.SeerError, match="is a file"):
        load(afile)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [None, object], ids=["str", "object"])
def test_a_1d_array_of_paths_is_a_list_of_images(clip: seer.Model, dtype) -> None:
    paths = np.array([str(p) for p in RGB_FILES[:3]], dtype=dtype)
    expected = clip.embed_images([str(p) for p in RGB_FILES[:3]])
    assert same_bits(clip.embed_images(paths), expected)
    labels = ["cat", "rocket"]
    assert clip.classify(paths, labels) == clip.classify(RGB_FILES[:3], labels)
    # Refused, not read as a list: a 1-D array of numbers, and of fixed-width
    # bytes (which drop each item's trailing NUL bytes).
    for bad in (np.zeros(3), np.array([b"a", b"b"])):
        with pytest.raises(TypeError, match="1-D array of paths"):
            clip.embed_images(bad)


def test_top_k_none_gives_every_label(clip: seer.Model) -> None:
    labels = ["cat", "rocket", "coffee"]
    every = clip.classify(RGB_FILES[:2], labels, top_k=None)
    assert [len(row) for row in every] == [3, 3]
    assert every == clip.classify(RGB_FILES[:2], labels, top_k=3)
    assert every == clip.classify(RGB_FILES[:2], labels, top_k=10**30)
    assert sorted(p.index for p in every[0]) == [0, 1, 2]


@pytest.mark.parametrize("features", ["mean", "patch"])
def test_patch_features_equal_seer_embed_features(features: str, tmp_path: Path) -> None:
    model = load(DINOV2, batch_size=2)
    expected = cli_embed(
        DINOV2, ["--image", *RGB_FILES], tmp_path, "--features", features, "--batch-size", "2"
    )
    got = model.embed_images(RGB_FILES, features=features)
    if features == "patch":
        assert model.patch_grid is not None
        assert got.shape == (len(RGB_FILES), *model.patch_grid, model.dim)
    assert got.shape == expected.shape
    assert same_bits(got, expected)
    raw = model.embed_images(RGB_FILES, features=features, normalize=False)
    raw_expected = cli_embed(
        DINOV2, ["--image", *RGB_FILES], tmp_path, "--features", features, "--batch-size", "2",
        "--raw",
    )  # fmt: skip
    assert same_bits(raw, raw_expected)


def test_patch_features_need_a_model_with_patch_tokens() -> None:
    clip = load(CLIP_OPENCLIP)
    assert clip.patch_grid is None
    with pytest.raises(seer.SeerError, match="does not give the mean of its patch tokens: patch features"):
        clip.embed_images(RGB_FILES[:1], features="mean")
    with pytest.raises(seer.SeerError, match="unknown features 'tokens'"):
        clip.embed_images(RGB_FILES[:1], features="tokens")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="a video's frames need ffmpeg")
def test_video_frames_equal_seer_embed_of_the_video(tmp_path: Path) -> None:
    model = load(CLIP_OPENCLIP, batch_size=3)
    video = REPO / "fixtures" / "video" / "clip.mp4"
    times, vectors = model.embed_video(video, frame_interval=0.5)
    flags = ("--frame-interval", "0.5", "--batch-size", "3")
    expected = cli_embed(CLIP_OPENCLIP, ["--image", video], tmp_path, *flags)
    assert len(times) == len(vectors) > 1
    assert same_bits(vectors, expected)
    rows = (tmp_path / "cli.inputs.txt").read_text().splitlines()
    assert rows == [f"{video}#t={t:.3f}" for t in times]
    with pytest.raises(seer.SeerError, match=r"frame_interval \(seconds\) must be 0.05 to 86400"):
        model.embed_video(video, frame_interval=0)
    with pytest.raises(seer.SeerError, match="not-a-video.mp4"):
        model.embed_video(REPO / "fixtures" / "video" / "not-a-video.mp4")
