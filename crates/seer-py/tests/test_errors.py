"""Bad inputs raise SeerError naming the input (index, file, cause), or with
errors="return" come back as NaN rows and messages; the good rows are
unchanged. Nothing panics."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
from conftest import CLIP_OPENCLIP, DINOV2, RCLIP, RGB_FILES, load, same_bits

import seer

GOOD = RGB_FILES[0]


def broken_files(tmp_path: Path) -> List[Tuple[Path, str]]:
    """(file, a phrase its error must hold)."""
    jpeg = RGB_FILES[1].read_bytes()
    png = GOOD.read_bytes()
    cases = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "JPEG"),
        "truncated.png": (png[: len(png) // 2], "PNG"),
        "corrupt.jpg": (jpeg[:200] + bytes(range(256)) * 40, "JPEG"),
        "header-only.png": (png[:8], "PNG"),
        "text.jpg": (b"this is not an image at all\n" * 10, "unrecognised image format"),
        # JPEG 2000, which seer does not read, named .jpg.
        "wrong-format.jpg": (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 100, "JPEG 2000"),
    }
    files = []
    for name, (data, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        files.append((path, phrase))
    return files


def test_a_broken_file_raises_seer_error_naming_index_file_and_cause(
    clip: seer.Model, tmp_path: Path
) -> None:
    for path, phrase in broken_files(tmp_path):
        with pytest.raises(seer.SeerError) as caught:
            clip.embed_images([GOOD, GOOD, path])
        error = caught.value
        assert isinstance(error, ValueError)
        message = str(error)
        assert message.startswith(f"input 2 ({path}): "), message
        assert phrase in message, message
        assert (error.index, error.input) == (2, str(path))
        assert error.cause and error.cause in message


def test_missing_files_folders_and_non_images_are_named(clip: seer.Model, tmp_path: Path) -> None:
    cases = [
        (tmp_path / "missing.jpg", "No such file"),
        (tmp_path, "Is a directory"),
        (RCLIP / "not-an-image.txt", "unrecognised image format"),
    ]
    for path, phrase in cases:
        with pytest.raises(seer.SeerError, match=r"^input 0 \(") as caught:
            clip.embed_images([path])
        assert str(path) in str(caught.value) and phrase in str(caught.value)


def test_errors_return_gives_nan_rows_and_messages(clip: seer.Model, tmp_path: Path) -> None:
    broken = broken_files(tmp_path)
    inputs: list = []
    for path, _ in broken:
        inputs += [GOOD, path]
    array, errors = clip.embed_images(inputs, errors="return")
    assert array.shape == (len(inputs), clip.dim) and array.dtype == np.float32
    good_row = clip.embed_images([GOOD])[0]
    for i, error in enumerate(errors):
        if i % 2 == 0:
            assert error is None
            assert same_bits(array[i], good_row)
        else:
            path = broken[i // 2][0]
            assert error is not None and error.startswith(f"input {i} ({path}): ")
            assert np.isnan(array[i]).all()


def test_broken_bytes_are_named_as_bytes(clip: seer.Model, tmp_path: Path) -> None:
    jpeg = RGB_FILES[1].read_bytes()
    cases = [(b"", "file is empty"), (jpeg[:100], "JPEG"), (b"GIF89a" + b"\x00" * 3, "GIF")]
    for data, phrase in cases:
        with pytest.raises(seer.SeerError) as caught:
            clip.embed_images([jpeg, data])
        assert str(caught.value).startswith("input 1 (bytes): ")
        assert phrase in str(caught.value)
        assert caught.value.index == 1


@pytest.mark.parametrize(
    "bad,phrase",
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "expected dtype uint8, got float32"),
        (np.zeros((8, 8), dtype=np.uint8), "expected an HxWx3 array"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "got shape (8, 8, 4)"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "holds no pixels"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "expected an HxWx3 array"),
        (np.array(["a", "b"]), "expected dtype uint8"),
        (12, "unsupported input type int"),
        (None, "unsupported input type NoneType"),
        ([[1, 2, 3]], "unsupported input type list"),
    ],
    ids=lambda v: getattr(v, "shape", v) if not isinstance(v, str) else "",
)
def test_bad_arrays_and_objects_raise_seer_error(clip: seer.Model, bad, phrase: str) -> None:
    with pytest.raises(seer.SeerError) as caught:
        clip.embed_images([GOOD, bad])
    assert str(caught.value).startswith("input 1 (")
    assert phrase in str(caught.value)
    array, errors = clip.embed_images([bad, GOOD], errors="return")
    assert errors[1] is None and errors[0] is not None and phrase in errors[0]
    assert np.isnan(array[0]).all() and not np.isnan(array[1]).any()


def test_a_pil_image_whose_file_is_truncated_is_an_input_error(
    clip: seer.Model, tmp_path: Path
) -> None:
    from PIL import Image

    data = RGB_FILES[1].read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    image = Image.open(path)  # PIL reads only the header here
    with pytest.raises(seer.SeerError) as caught:
        clip.embed_images([image])
    assert str(caught.value).startswith("input 0 (PIL image): cannot convert to RGB")


def test_a_bad_image_stops_no_other_row_in_classify(clip: seer.Model, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    labels = ["cat", "rocket"]
    with pytest.raises(seer.SeerError, match=rf"^input 1 \({bad}\)"):
        clip.classify([GOOD, bad], labels)
    results, errors = clip.classify([GOOD, bad, GOOD], labels, errors="return")
    assert results[1] is None and errors[1] is not None and str(bad) in errors[1]
    assert results[0] == results[2] == clip.classify([GOOD], labels)[0]
    assert errors[0] is None and errors[2] is None


def test_single_inputs_and_bad_arguments_are_refused(clip: seer.Model) -> None:
    with pytest.raises(TypeError, match="list"):
        clip.embed_images(str(GOOD))
    with pytest.raises(TypeError, match="list"):
        clip.embed_images(GOOD.read_bytes())
    with pytest.raises(TypeError, match="list"):
        clip.embed_images(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="list"):
        clip.embed_texts("a cat")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        clip.embed_texts(["a cat", 3])
    with pytest.raises(ValueError, match="errors must be"):
        clip.embed_images([GOOD], errors="ignore")
    with pytest.raises(ValueError, match="top_k"):
        clip.classify([GOOD], ["cat"], top_k=0)
    with pytest.raises(seer.SeerError, match="at least one label"):
        clip.classify([GOOD], [])
    with pytest.raises(seer.SeerError, match="placeholder"):
        clip.classify([GOOD], ["cat"], templates=["a photo"])
    with pytest.raises(seer.SeerError, match="no-such-templates.txt"):
        clip.classify([GOOD], ["cat"], templates="no-such-templates.txt")


def test_empty_lists_give_empty_arrays(clip: seer.Model) -> None:
    assert clip.embed_images([]).shape == (0, clip.dim)
    array, errors = clip.embed_images([], errors="return")
    assert array.shape == (0, clip.dim) and errors == []
    assert clip.embed_texts([]).shape == (0, clip.dim)
    assert clip.classify([], ["cat"]) == []


def test_an_image_only_model_refuses_texts_clearly() -> None:
    dinov2 = load(DINOV2)
    with pytest.raises(seer.SeerError, match="embeds images only"):
        dinov2.embed_texts(["a cat"])
    with pytest.raises(seer.SeerError, match="embeds images only"):
        dinov2.classify([GOOD], ["cat"])


def test_loading_errors_are_clear(tmp_path: Path) -> None:
    # Offline, a hub id that is not in the (empty) cache says what to do.
    with pytest.raises(seer.SeerError) as caught:
        seer.Model("openai/clip-vit-base-patch32", offline=True)
    message = str(caught.value)
    assert "not in the Hugging Face cache" in message and "network is off" in message
    # $HF_HUB_OFFLINE (set by conftest) is read when offline is not given.
    with pytest.raises(seer.SeerError, match="network is off"):
        seer.Model("ViT-B-32")
    with pytest.raises(seer.SeerError, match="does not exist"):
        seer.Model(tmp_path / "no-such-folder" / "model", offline=True)
    with pytest.raises(seer.SeerError, match="unknown device"):
        seer.Model(CLIP_OPENCLIP, device="tpu")
    with pytest.raises(seer.SeerError, match="unknown precision"):
        seer.Model(CLIP_OPENCLIP, precision="f8")
    with pytest.raises(seer.SeerError, match="batch_size"):
        seer.Model(CLIP_OPENCLIP, batch_size=0)
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(seer.SeerError, match="cannot load model"):
        seer.Model(empty, offline=True)


def test_max_pixels_refuses_large_images(tmp_path: Path) -> None:
    small = load(CLIP_OPENCLIP, max_pixels=1000)
    with pytest.raises(seer.SeerError, match="over the budget"):
        small.embed_images([GOOD])
    with pytest.raises(seer.SeerError, match="over the budget"):
        small.embed_images([np.zeros((40, 40, 3), dtype=np.uint8)])
    assert small.embed_images([np.zeros((20, 20, 3), dtype=np.uint8)]).shape == (1, 16)


def test_an_array_over_the_budget_is_refused_before_it_is_copied() -> None:
    model = load(CLIP_OPENCLIP)
    # A broadcast view: 3 bytes of memory for 10**12 pixels, which copying
    # (np.ascontiguousarray, tobytes) would try to allocate (2.7 TiB).
    huge = np.lib.stride_tricks.as_strided(
        np.zeros(3, np.uint8), shape=(10**6, 10**6, 3), strides=(0, 0, 1)
    )
    rows, errors = model.embed_images([np.zeros((4, 4, 3), np.uint8), huge], errors="return")
    assert errors[0] is None and np.isfinite(rows[0]).all()
    assert "over the budget" in errors[1] and np.isnan(rows[1]).all()


@pytest.mark.parametrize(
    "templates,phrase",
    [
        (b"a {}", "not a bytes"),
        (bytearray(b"a {}"), "not a bytearray"),
        ([1, 2], r"templates\[0\] is a int"),
        (["a {}", None], r"templates\[1\] is a NoneType"),
        (3, "not a int"),
        (None, "not a NoneType"),
    ],
    ids=["bytes", "bytearray", "ints", "none-item", "int", "none"],
)
def test_templates_of_a_wrong_type_raise_type_error_naming_templates(
    clip: seer.Model, templates, phrase: str
) -> None:
    with pytest.raises(TypeError, match=phrase) as caught:
        clip.classify([GOOD], ["cat"], templates=templates)
    assert "templates" in str(caught.value) and "failed to extract" not in str(caught.value)
    # The native half says the same kind of thing.
    with pytest.raises(TypeError, match="templates must be a str"):
        clip._native.classify([], ["cat"], templates, 1, True)


def test_labels_of_a_wrong_type_raise_type_error_naming_labels(clip: seer.Model) -> None:
    with pytest.raises(TypeError, match=r"labels\[1\] is a int"):
        clip.classify([GOOD], ["cat", 2])
    with pytest.raises(TypeError, match="labels: pass a list of class names, not a bytes"):
        clip.classify([GOOD], b"cat")


@pytest.mark.parametrize("value", [0, -1, -(2**70), -(2**200)])
def test_counts_below_one_raise_the_same_seer_error_as_zero(value: int) -> None:
    for name in ("batch_size", "max_pixels"):
        with pytest.raises(seer.SeerError, match=f"^{name} must be at least 1, got {value}$"):
            load(CLIP_OPENCLIP, **{name: value})
    model = load(CLIP_OPENCLIP)
    with pytest.raises(seer.SeerError, match=f"^top_k must be at least 1 .*got {value}$"):
        model.classify([GOOD], ["cat"], top_k=value)
    with pytest.raises(seer.SeerError, match=f"^top_k must be at least 1, got {value}$"):
        model._native.classify([], ["cat"], "default", value, True)


def test_counts_past_their_range_and_of_wrong_types_are_named() -> None:
    with pytest.raises(seer.SeerError, match="^max_pixels must be at most 18446744073709551615"):
        load(CLIP_OPENCLIP, max_pixels=2**64)
    with pytest.raises(seer.SeerError, match="^batch_size must be at most"):
        load(CLIP_OPENCLIP, batch_size=2**200)
    with pytest.raises(TypeError, match="batch_size"):
        load(CLIP_OPENCLIP, batch_size=2.0)
    with pytest.raises(TypeError, match="max_pixels"):
        load(CLIP_OPENCLIP, max_pixels="1000")
    assert load(CLIP_OPENCLIP, batch_size=np.int64(3)).batch_size == 3
    model = load(CLIP_OPENCLIP)
    for bad in ("3", 2.5):
        with pytest.raises(TypeError, match=r"^top_k must be an int \(or None for every label\)"):
            model.classify([GOOD], ["cat"], top_k=bad)  # type: ignore[arg-type]
