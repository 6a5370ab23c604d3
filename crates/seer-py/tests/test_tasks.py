"""The tasks beyond embeddings (BLIP captions, answers and matching, OWL-ViT
detection, SAM segmentation) against their commands' ``--json`` on the tiny
fixtures, and what they refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import List

import numpy as np
import pytest
from conftest import REPO, RGB_FILES, SEER_BIN, TOKENIZER

import seer

CAPTION = REPO / "fixtures" / "blip" / "caption-tiny"
VQA = REPO / "fixtures" / "blip" / "vqa-tiny"
RETRIEVAL = REPO / "fixtures" / "blip" / "retrieval-tiny"
OWLVIT = REPO / "fixtures" / "owlvit" / "owlvit-tiny"
SAM = REPO / "fixtures" / "sam" / "sam-tiny"
CLIP = REPO / "fixtures" / "models" / "openclip-vit"

FILES = RGB_FILES[:3]


def cli_json(*args: object) -> List[dict]:
    """``seer ARGS --json``'s lines (the command must succeed)."""
    out = subprocess.run(
        [str(SEER_BIN), *map(str, args), "--json"],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def f32(x: float) -> np.float32:
    """A float as the f32 seer computed (JSON holds its shortest f32 digits)."""
    return np.float32(x)


@pytest.fixture(scope="module")
def captioner() -> seer.Model:
    return seer.Model(CAPTION, offline=True, batch_size=2)


@pytest.fixture(scope="module")
def sam() -> seer.Model:
    return seer.Model(SAM, offline=True)


def test_captions_equal_seer_caption_json_in_the_same_batches(captioner: seer.Model) -> None:
    lines = cli_json("caption", "--model", CAPTION, "--batch-size", 2, *FILES)
    assert captioner.caption(FILES) == [line["caption"] for line in lines]


def test_caption_options_are_the_command_line_s(captioner: seer.Model) -> None:
    options = ("--prompt", "a picture of", "--beams", 3, "--max-new-tokens", 6)
    lines = cli_json("caption", "--model", CAPTION, "--batch-size", 2, *options, *FILES)
    got = captioner.caption(FILES, prompt="a picture of", beams=3, max_new_tokens=6)
    assert got == [line["caption"] for line in lines]


def test_a_broken_image_fails_alone_and_keeps_its_place(
    captioner: seer.Model, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(FILES[0].read_bytes()[:300])
    captions, errors = captioner.caption([FILES[0], broken, FILES[1]], errors="return")
    assert captions[0] == captioner.caption([FILES[0]])[0]
    assert captions[1] is None and captions[2] is not None
    assert errors[0] is None and errors[2] is None
    assert errors[1].startswith(f"input 1 ({broken}): ")
    with pytest.raises(seer.SeerError, match="input 1") as raised:
        captioner.caption([FILES[0], broken])
    assert raised.value.index == 1


def test_arrays_caption_as_their_files(captioner: seer.Model) -> None:
    from PIL import Image

    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in FILES]
    assert captioner.caption(arrays) == captioner.caption(FILES)


def test_answers_equal_seer_ask_json() -> None:
    model = seer.Model(VQA, offline=True)
    question = "what is in the picture?"
    expected = [cli_json("ask", "--model", VQA, f, question)[0]["answer"] for f in FILES]
    assert model.ask(FILES, question) == expected
    # One question per image, each asked of its own image.
    other = "is it red?"
    each = model.ask(FILES[:2], [question, other])
    assert each == [expected[0], cli_json("ask", "--model", VQA, FILES[1], other)[0]["answer"]]


def test_matches_equal_seer_match_json() -> None:
    model = seer.Model(RETRIEVAL, offline=True, batch_size=2)
    texts = ["a cat on a sofa", "a red apple", "a rocket"]
    scores = model.match(FILES, texts)
    assert scores.itm_probability.shape == scores.similarity.shape == (len(FILES), len(texts))
    assert scores.itm_probability.dtype == np.float32
    for i, f in enumerate(FILES):
        args = [a for t in texts for a in ("--text", t)]
        lines = cli_json("match", "--model", RETRIEVAL, "--image", f, *args)
        assert [line["text"] for line in lines] == texts
        assert list(scores.itm_probability[i]) == [f32(x["itm_probability"]) for x in lines]
        assert list(scores.similarity[i]) == [f32(x["similarity"]) for x in lines]


def test_detections_equal_seer_detect_json() -> None:
    model = seer.Model(OWLVIT, offline=True, tokenizer=TOKENIZER)
    labels = ["a cat", "a rocket", "an apple"]
    # A low threshold, so that the random fixture finds boxes to compare.
    found = model.detect(FILES, labels, threshold=0.0005)
    lines = cli_json(
        "detect",
        "--model",
        OWLVIT,
        "--tokenizer",
        TOKENIZER,
        "--labels",
        ",".join(labels),
        "--threshold",
        0.0005,
        *FILES,
    )
    assert sum(len(d) for d in found) > 0
    for detections, line in zip(found, lines):
        expected = line["detections"]
        assert [d.label for d in detections] == [e["label"] for e in expected]
        assert [labels[d.index] for d in detections] == [e["label"] for e in expected]
        assert [f32(d.score) for d in detections] == [f32(e["score"]) for e in expected]
        assert [tuple(map(f32, d.box)) for d in detections] == [
            tuple(map(f32, e["box"])) for e in expected
        ]


def test_an_image_query_detects_as_seer_detect_image_query() -> None:
    model = seer.Model(OWLVIT, offline=True, tokenizer=TOKENIZER)
    found = model.detect(FILES[:2], image_query=FILES[2])
    lines = cli_json(
        "detect", "--model", OWLVIT, "--tokenizer", TOKENIZER, "--image-query", FILES[2], *FILES[:2]
    )
    for detections, line in zip(found, lines):
        assert [f32(d.score) for d in detections] == [f32(e["score"]) for e in line["detections"]]


def rle_mask(rle: dict) -> np.ndarray:
    """COCO's uncompressed RLE (column-major runs, background first) as a mask."""
    height, width = rle["size"]
    runs = np.repeat(np.arange(len(rle["counts"])) % 2 == 1, rle["counts"])
    return runs.reshape(width, height).T


def test_masks_equal_seer_segment_json(sam: seer.Model) -> None:
    image = FILES[0]
    masks = sam.segment(image, points=[(40, 50), (100, 80, 0)], boxes=[(10, 10, 200, 150)])
    doc = cli_json(
        "segment", "--model", SAM, "--point", "40,50", "--point", "100,80,0",
        "--box", "10,10,200,150", image,
    )[0]  # fmt: skip
    assert len(masks) == len(doc["masks"]) == 3
    for mask, expected in zip(masks, doc["masks"]):
        assert mask.object == expected["object"]
        assert f32(mask.iou) == f32(expected["iou"])
        assert mask.mask.shape == (doc["height"], doc["width"]) and mask.mask.dtype == np.bool_
        assert np.array_equal(mask.mask, rle_mask(expected["rle"]))
        assert mask.logits.shape == (256, 256) and mask.logits.dtype == np.float32
    single = sam.segment(image, boxes=[(10, 10, 200, 150), (0, 0, 60, 60)], multimask=False)
    assert [m.object for m in single] == [0, 1]
    # Arrays of points and boxes, as numpy users hold them.
    points, boxes = np.array([[40, 50], [100, 80]]), np.array([[10, 10, 200, 150]])
    arrays = sam.segment(image, points=points, boxes=boxes)
    lists = sam.segment(image, points=[(40, 50), (100, 80)], boxes=[(10, 10, 200, 150)])
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(arrays, lists))
    # An earlier answer's logits refine it, as --mask-input does.
    again = sam.segment(image, points=[(40, 50)], mask_logits=masks[0].logits)
    assert len(again) == 3


def test_generated_masks_equal_seer_segment_auto_json(sam: seer.Model) -> None:
    image = FILES[1]
    masks = sam.generate_masks(
        image, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0
    )
    doc = cli_json(
        "segment", "--model", SAM, "--auto", "--points-per-side", 4, "--pred-iou-thresh", 0,
        "--stability-score-thresh", 0, image,
    )[0]  # fmt: skip
    assert len(masks) == len(doc["masks"]) > 0
    for mask, expected in zip(masks, doc["masks"]):
        assert f32(mask.iou) == f32(expected["iou"])
        assert np.array_equal(mask.mask, rle_mask(expected["rle"]))
        assert list(mask.crop_box) == expected["crop_box"]
        assert list(mask.point) == expected["point"]


def test_each_task_refuses_a_model_of_another_family() -> None:
    clip = seer.Model(CLIP, offline=True, tokenizer=TOKENIZER)
    with pytest.raises(seer.SeerError, match="writes no captions: this needs a BLIP captioning"):
        clip.caption(FILES[:1])
    with pytest.raises(seer.SeerError, match="answers no questions"):
        clip.ask(FILES[:1], "what?")
    with pytest.raises(seer.SeerError, match="no image-text matching head"):
        clip.match(FILES[:1], ["a cat"])
    with pytest.raises(seer.SeerError, match="detects no objects"):
        clip.detect(FILES[:1], ["a cat"])
    with pytest.raises(seer.SeerError, match="does not segment"):
        clip.segment(FILES[0], points=[(1, 1)])
    captioner = seer.Model(CAPTION, offline=True)
    with pytest.raises(seer.SeerError, match="has no image tower"):
        captioner.embed_images(FILES[:1])


def test_bad_arguments_are_named(captioner: seer.Model, sam: seer.Model) -> None:
    with pytest.raises(seer.SeerError, match="prompt is empty"):
        captioner.caption(FILES[:1], prompt="  ")
    with pytest.raises(seer.SeerError, match="beams must be at least 1"):
        captioner.caption(FILES[:1], beams=0)
    with pytest.raises(TypeError, match="max_new_tokens must be an int"):
        captioner.caption(FILES[:1], max_new_tokens=2.5)
    vqa = seer.Model(VQA, offline=True)
    with pytest.raises(seer.SeerError, match="2 questions for 1 images"):
        vqa.ask(FILES[:1], ["a?", "b?"])
    with pytest.raises(seer.SeerError, match=r"questions\[0\] is empty"):
        vqa.ask(FILES[:1], [" "])
    owl = seer.Model(OWLVIT, offline=True, tokenizer=TOKENIZER)
    with pytest.raises(TypeError, match="labels .* or an image_query, not both"):
        owl.detect(FILES[:1])
    with pytest.raises(seer.SeerError, match=r"nms must be an IoU in \(0, 1\]"):
        owl.detect(FILES[:1], ["a cat"], nms=0)
    with pytest.raises(seer.SeerError, match="threshold must be a finite number"):
        owl.detect(FILES[:1], ["a cat"], threshold=float("nan"))
    with pytest.raises(seer.SeerError, match="give points, boxes or mask_logits"):
        sam.segment(FILES[0])
    with pytest.raises(seer.SeerError, match=r"points\[0\] must be \(x, y\) or \(x, y, label\)"):
        sam.segment(FILES[0], points=[(1, 2, 1, 4)])
    with pytest.raises(seer.SeerError, match=r"points\[0\]: the label must be 1"):
        sam.segment(FILES[0], points=[(1, 2, 5)])
    with pytest.raises(seer.SeerError, match=r"mask_logits must be a \(256, 256\) array"):
        sam.segment(FILES[0], mask_logits=np.zeros((4, 4)))
    with pytest.raises(seer.SeerError, match="points_per_side must be 1 to 1024"):
        sam.generate_masks(FILES[0], points_per_side=0)
    with pytest.raises(seer.SeerError, match=r"input 0 \(.*missing.jpg\): "):
        sam.segment(FILES[0].parent / "missing.jpg", points=[(1, 1)])


def test_prompting_the_last_image_again_reuses_its_embedding_exactly(tmp_path: Path) -> None:
    """segment keeps the last image's embedding: a second prompt on it, or the
    same pixels as bytes, gives what a fresh model gives; a file changed in
    place is embedded again."""
    cached = seer.Model(SAM, offline=True)
    first = cached.segment(FILES[0], points=[(40, 50)])
    cached.segment(FILES[0], boxes=[(10, 10, 200, 150)])
    again = cached.segment(FILES[0].read_bytes(), points=[(40, 50)])
    assert all(np.array_equal(a.mask, b.mask) and a.iou == b.iou for a, b in zip(first, again))
    swapped = tmp_path / "image.png"
    shutil.copy(FILES[0], swapped)
    cached.segment(swapped, points=[(40, 50)])
    shutil.copy(FILES[1], swapped)
    changed = cached.segment(swapped, points=[(40, 50)])
    fresh = seer.Model(SAM, offline=True).segment(FILES[1], points=[(40, 50)])
    assert [m.mask.shape for m in changed] == [m.mask.shape for m in fresh]
    assert all(np.array_equal(a.mask, b.mask) and a.iou == b.iou for a, b in zip(changed, fresh))
