"""Inputs a careless or hostile caller passes: special files, text UTF-8 cannot
hold, arguments of the wrong type, and a signal (Ctrl-C) during a long batch.
Each gets a clear error of the right type, per input where the API has one
error per input, and never a hang."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterator, List

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from conftest import CLIP_OPENCLIP, RGB_FILES, TOKENIZER, load, run_seer

import seer

GOOD = RGB_FILES[0]


@pytest.fixture(scope="module")
def clip() -> seer.Model:
    return load(CLIP_OPENCLIP)


@contextlib.contextmanager
def fifo_with_a_writer(fifo: Path, data: bytes) -> Iterator[None]:
    """A FIFO with a writer waiting for a reader, in another process (a thread
    would need the GIL, which code reading the FIFO may hold): code that opens
    the FIFO reads `data` (and fails on it) instead of waiting forever for a
    writer, so that the old behaviour fails a test rather than hanging it."""
    os.mkfifo(fifo)
    source = fifo.with_name(fifo.name + ".data")
    source.write_bytes(data)
    writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(source), str(fifo)])
    try:
        yield
    finally:
        # A reader held open until the writer ends releases it if nothing read
        # the FIFO (its few bytes fit the pipe's buffer).
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            writer.wait()
        finally:
            os.close(reader)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_device_is_an_input_error_not_a_hang(clip: seer.Model, tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    with fifo_with_a_writer(fifo, b"not an image"):
        rows, errors = clip.embed_images([fifo, "/dev/null", GOOD], errors="return")
    assert errors[0] == (
        f"input 0 ({fifo}): not a regular file (a FIFO): pass an image file's path, or its bytes"
    )
    assert errors[1] is not None and "not a regular file (a device)" in errors[1]
    assert errors[2] is None
    assert np.isnan(rows[:2]).all() and np.isfinite(rows[2]).all()


def test_a_path_no_file_can_have_is_an_input_error(clip: seer.Model) -> None:
    paths = ["/tmp/\ud800.jpg", Path("x\udfff.png"), GOOD]
    rows, errors = clip.embed_images(paths, errors="return")
    assert errors[0] == (
        "input 0 (/tmp/\\ud800.jpg): the path cannot be a file's name "
        "(surrogates not allowed: '\\ud800')"
    )
    assert errors[1] is not None and errors[1].startswith("input 1 (x\\udfff.png): the path")
    assert errors[2] is None and np.isfinite(rows[2]).all()
    with pytest.raises(seer.SeerError, match=r"input 0 \(/tmp/\\ud800.jpg\)") as raised:
        clip.embed_images(["/tmp/\ud800.jpg"])
    assert raised.value.index == 0
    # A path os.fsdecode made from bytes that are not UTF-8 is a file's name.
    _, errors = clip.embed_images([os.fsdecode(b"/nonexistent/\xff.jpg")], errors="return")
    assert errors[0] is not None and "No such file" in errors[0]


def test_text_with_a_lone_surrogate_is_named(clip: seer.Model) -> None:
    with pytest.raises(seer.SeerError, match=r"texts\[1\] is not valid text: '\\ud800' at pos"):
        clip.embed_texts(["fine", "a\ud800b"])
    with pytest.raises(seer.SeerError, match=r"labels\[1\] is not valid text"):
        clip.classify([GOOD], ["cat", "\udcff"])
    with pytest.raises(seer.SeerError, match=r"templates\[0\] is not valid text"):
        clip.classify([GOOD], ["cat"], templates=["a {} \ud800"])
    with pytest.raises(seer.SeerError, match=r"templates is not valid text"):
        clip.classify([GOOD], ["cat"], templates="\ud800")
    # NUL and empty texts are text.
    assert clip.embed_texts(["a\0b", ""]).shape == (2, clip.dim)


def test_flags_and_column_names_of_a_wrong_type_raise_type_error_naming_them(
    clip: seer.Model,
) -> None:
    for bad in (None, 0, "no"):
        with pytest.raises(TypeError, match="normalize must be a bool"):
            clip.embed_images([GOOD], normalize=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="normalize must be a bool"):
            clip.embed_texts(["a"], normalize=bad)  # type: ignore[arg-type]
    assert clip.embed_texts(["a"], normalize=np.bool_(False)).shape == (1, clip.dim)
    table = pa.table({"jpg": [GOOD.read_bytes()]})
    with pytest.raises(TypeError, match="image_column must be a str, got NoneType"):
        clip.embed_arrow(table, image_column=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_column must be a str or None, got int"):
        clip.embed_arrow(table, key_column=0)  # type: ignore[arg-type]
    with pytest.raises(seer.SeerError, match="templates is an empty string"):
        clip.classify([GOOD], ["cat"], templates="")


def test_a_dictionary_encoded_image_column_is_read() -> None:
    model = load(CLIP_OPENCLIP)
    images = pa.array([GOOD.read_bytes(), b"broken", GOOD.read_bytes()], pa.binary())
    plain = model.embed_arrow(pa.table({"jpg": images}), key_column=None)
    encoded = model.embed_arrow(pa.table({"jpg": images.dictionary_encode()}), key_column=None)
    assert encoded.equals(plain)


def test_a_pil_image_over_the_budget_is_refused_before_it_is_converted() -> None:

    small = load(CLIP_OPENCLIP, max_pixels=1000)
    opened = Image.open(GOOD)
    _, errors = small.embed_images([opened], errors="return")
    width, height = opened.size
    assert errors == [
        f"input 0 (PIL image {width}x{height}): {width * height} pixels, "
        "over the budget of 1000 pixels"
    ]


class Interrupted(Exception):
    pass


def reads_update_atime(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    os.utime(probe, (0, probe.stat().st_mtime))
    probe.read_bytes()
    return probe.stat().st_atime != 0


@contextlib.contextmanager
def interrupted_once(ready: Callable[[], bool]) -> Iterator[None]:
    """Within the block, SIGUSR1 is sent to this (the main) thread once
    ``ready()`` says so, and its handler raises ``Interrupted``: what Ctrl-C's
    ``KeyboardInterrupt`` does, without stopping pytest."""
    main = threading.get_ident()

    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted

    # Set when the block ends: a call that failed before it was ready gets
    # no signal later, and the sender does not wait forever.
    ended = threading.Event()

    def send_once_ready() -> None:
        while not ready():
            if ended.wait(0.001):
                return
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    try:
        sender = threading.Thread(target=send_once_ready)
        sender.start()
        try:
            yield
        finally:
            ended.set()
            sender.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("call", ["embed_images", "classify"])
def test_a_signal_stops_a_long_batch_before_its_end(call: str, tmp_path: Path) -> None:
    """Python runs a signal handler (Ctrl-C's KeyboardInterrupt) only between
    bytecodes: the native call looks for signals while it waits, and stops at
    the next batch. Which files were read shows where it stopped (a file's
    access time moves when it is read, set in the past first)."""
    if not reads_update_atime(tmp_path):
        pytest.skip("this file system does not record reads (noatime)")
    model = load(CLIP_OPENCLIP, batch_size=1)
    data = GOOD.read_bytes()
    files: List[Path] = []
    for i in range(400):
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        os.utime(path, (0, path.stat().st_mtime))
        files.append(path)
    run: Callable[[], object] = {
        "embed_images": lambda: model.embed_images(files),
        "classify": lambda: model.classify(files, ["cat", "dog"]),
    }[call]

    # Once the first file is read the native call runs; a signal now is seen
    # only by a call that looks for it.
    with interrupted_once(lambda: files[0].stat().st_atime != 0):
        with pytest.raises(Interrupted):
            run()
    read = sum(f.stat().st_atime != 0 for f in files)
    assert read < len(files), "the call ran to its end before the signal's handler ran"
    # The model works after an interrupted call.
    assert model.embed_images(files[:2]).shape == (2, model.dim)


def test_a_signal_during_texts_raises_its_exception_and_the_model_still_works() -> None:
    model = load(CLIP_OPENCLIP, batch_size=4)
    started = threading.Event()
    with interrupted_once(started.is_set):
        texts = ["a photo of a cat"] * 20000
        with pytest.raises(Interrupted):
            started.set()
            model.embed_texts(texts)
    assert model.embed_texts(["a cat"]).shape == (1, model.dim)


def test_a_signal_stops_measuring_the_duplicate_threshold(tmp_path: Path) -> None:
    """The measurement embeds altered copies of up to ``sample`` photos (for a
    large model, minutes): a signal stops it at its next batch, as for the
    model's own batches, and the index still answers after."""
    if not reads_update_atime(tmp_path):
        pytest.skip("this file system does not record reads (noatime)")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(300):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{i:03}.png")
    index_dir = tmp_path / "index"
    run_seer(["index", "--index", str(index_dir), "--model", str(CLIP_OPENCLIP), str(photos)])
    files = sorted(photos.iterdir())
    for path in files:
        os.utime(path, (0, path.stat().st_mtime))
    # Three copies a photo: one photo a batch.
    index = seer.Index(index_dir, tokenizer=TOKENIZER, offline=True, batch_size=3)
    with interrupted_once(lambda: any(f.stat().st_atime != 0 for f in files)):
        with pytest.raises(Interrupted):
            index.duplicate_threshold(calibrate=True, sample=300)
    read = sum(f.stat().st_atime != 0 for f in files)
    assert read < len(files), "the measurement ran to its end before the signal's handler ran"
    # Nothing was remembered; a measurement afterwards runs and is.
    measured = index.duplicate_threshold(sample=4)
    assert (measured.photos, measured.copies) == (4, 12)
    assert index.duplicate_threshold() == measured


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_templates_or_tokenizer_is_refused_not_waited_on(
    clip: seer.Model, tmp_path: Path
) -> None:
    fifo = tmp_path / "templates.txt"
    with fifo_with_a_writer(fifo, b"\xff not text"):
        with pytest.raises(seer.SeerError, match=rf"templates {fifo}: not a regular file \(a FIFO\)"):
            clip.classify([GOOD], ["cat"], templates=str(fifo))
        with pytest.raises(seer.SeerError, match=rf"templates {fifo}: not a regular file"):
            clip.classify([GOOD], ["cat"], templates=f"{fifo}#imagenet")
        with pytest.raises(seer.SeerError, match=rf"tokenizer {fifo}: not a regular file \(a FIFO\)"):
            seer.Model(CLIP_OPENCLIP, tokenizer=fifo, offline=True)


def test_a_template_list_follows_the_command_line_s_one_placeholder_rule(clip: seer.Model) -> None:
    with pytest.raises(seer.SeerError, match=r"template 'a \{\} and a \{\}' has 2 \{\} placeholders"):
        clip.classify([GOOD], ["cat"], templates=["a {}", "a {} and a {}"])
    with pytest.raises(seer.SeerError, match=r"template 'a photo' has no \{\} placeholder"):
        clip.classify([GOOD], ["cat"], templates=["a photo"])


def test_one_image_array_passed_alone_says_to_wrap_it(clip: seer.Model) -> None:
    with pytest.raises(TypeError, match=r"got an array of shape \(8, 8, 3\).*wrap it in a list"):
        clip.embed_images(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]
