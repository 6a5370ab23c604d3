"""The tasks of the families that do more than embed (BLIP, OWL-ViT, SAM):
what ``seer.Model``'s ``caption``, ``ask``, ``match``, ``detect``, ``segment``
and ``generate_masks`` check, call and return. Each equals its command's
``--json`` (``seer caption``, ``ask``, ``match``, ``detect``, ``segment``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _seer
from ._checks import (
    check_text,
    flag,
    integer,
    matrix,
    messages,
    number,
    raise_first,
    raise_unencodable,
    stop_on_error,
    strings,
)
from ._checks import texts as check_texts
from ._inputs import ImageInput, native_inputs
from ._seer import SeerError

#: ``(x0, y0, x1, y1)`` in the image's pixels.
Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One box of ``detect``, as ``seer detect --json`` gives it."""

    label: str
    #: The label's position in the labels given (0 for an image query).
    index: int
    score: float
    #: ``(x0, y0, x1, y1)`` in the image's pixels.
    box: Box


@dataclass(frozen=True)
class Matches:
    """``match``'s scores, each a float32 array (images, texts)."""

    #: The image-text matching head's probability that the text describes
    #: the image (reads word order).
    itm_probability: np.ndarray
    #: Cosine of the contrastive image and text features.
    similarity: np.ndarray


@dataclass(frozen=True, eq=False)
class Mask:
    """One mask of ``segment``."""

    #: Which object of the prompt: the box's index (0 without boxes).
    object: int
    #: The model's predicted IoU.
    iou: float
    #: ``bool`` array (height, width) at the image's size.
    mask: np.ndarray
    #: The low-resolution logits, float32 (256, 256): pass them back as
    #: ``mask_logits`` to refine the mask with more points.
    logits: np.ndarray


@dataclass(frozen=True, eq=False)
class GeneratedMask:
    """One mask of ``generate_masks``, as ``seer segment --auto --json`` gives it."""

    #: ``bool`` array (height, width) at the image's size.
    mask: np.ndarray
    #: The model's predicted IoU.
    iou: float
    #: The stability score (NaN where the filter was off and never computed).
    stability_score: float
    #: ``(x0, y0, x1, y1)``, inclusive pixel corners.
    box: Tuple[int, int, int, int]
    #: The crop it came from, ``(x0, y0, x1, y1)`` (exclusive right and bottom).
    crop_box: Tuple[int, int, int, int]
    #: The grid point that prompted it, in the image's pixels.
    point: Tuple[float, float]


def caption(
    native: _seer.Model,
    images: Sequence[ImageInput],
    prompt: Optional[str],
    beams: Optional[int],
    max_new_tokens: Optional[int],
    errors: str,
) -> Any:
    stop = stop_on_error(errors)
    if prompt is not None:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str or None, got {type(prompt).__name__}")
        check_text("prompt", prompt)
    counts = _counts(beams=beams, max_new_tokens=max_new_tokens)
    inputs = native_inputs(images, native.max_pixels)
    texts, failures = native.caption(inputs, prompt, *counts, stop)
    return _finish(texts, failures, stop)


def ask(
    native: _seer.Model,
    images: Sequence[ImageInput],
    questions: Union[str, Sequence[str]],
    beams: Optional[int],
    max_new_tokens: Optional[int],
    errors: str,
) -> Any:
    stop = stop_on_error(errors)
    counts = _counts(beams=beams, max_new_tokens=max_new_tokens)
    inputs = native_inputs(images, native.max_pixels)
    if isinstance(questions, str):
        check_text("question", questions)
        asked = [questions] * len(inputs)
    else:
        asked = strings("questions", questions, "a question (str) or one per image")
        if len(asked) != len(inputs):
            raise SeerError(f"{len(asked)} questions for {len(inputs)} images: pass one per image")
        raise_unencodable("questions", asked)
    texts, failures = native.ask(inputs, asked, *counts, stop)
    return _finish(texts, failures, stop)


def match(
    native: _seer.Model, images: Sequence[ImageInput], texts: Sequence[str], errors: str
) -> Any:
    stop = stop_on_error(errors)
    texts = strings("texts", texts, "a list of texts")
    if not texts:
        raise SeerError("texts is empty: pass at least one text to score")
    raise_unencodable("texts", texts)
    inputs = native_inputs(images, native.max_pixels)
    itm, similarity, failures = native.match_texts(inputs, texts, stop)
    if stop:
        raise_first(failures)
    shape = (len(inputs), len(texts))
    result = Matches(matrix(itm, *shape), matrix(similarity, *shape))
    return result if stop else (result, messages(failures))


def detect(
    native: _seer.Model,
    images: Sequence[ImageInput],
    labels: Optional[Sequence[str]],
    image_query: Optional[ImageInput],
    threshold: Optional[float],
    nms: float,
    errors: str,
) -> Any:
    stop = stop_on_error(errors)
    if (labels is None) == (image_query is None):
        raise TypeError("detect: pass labels (a list of str) or an image_query, not both")
    query = None
    if labels is not None:
        labels = strings("labels", labels, "a list of what to look for")
        if not labels:
            raise SeerError("labels is empty: pass at least one thing to look for")
        check_texts("labels", labels)
    else:
        query = native_inputs([image_query], native.max_pixels, "image_query")[0]
    if threshold is not None:
        threshold = number("threshold", threshold)
    nms = number("nms", nms)
    if not 0.0 < nms <= 1.0:
        raise SeerError(f"nms must be an IoU in (0, 1] (1 turns it off), got {nms}")
    inputs = native_inputs(images, native.max_pixels)
    found, failures = native.detect(inputs, labels, query, threshold, nms, stop)
    results = [
        None if boxes is None else [Detection(label, i, s, tuple(b)) for label, i, s, b in boxes]
        for boxes in found
    ]
    return _finish(results, failures, stop)


def segment(
    native: _seer.Model,
    image: ImageInput,
    points: Optional[Sequence[Sequence[float]]],
    boxes: Optional[Sequence[Sequence[float]]],
    mask_logits: Optional[np.ndarray],
    multimask: bool,
) -> List[Mask]:
    multimask = flag("multimask", multimask)
    # `is None`, not `or`: an array of points has no truth value.
    clicks = [_point(i, p) for i, p in enumerate([] if points is None else points)]
    rects = [_box(i, b) for i, b in enumerate([] if boxes is None else boxes)]
    logits = None
    if mask_logits is not None:
        logits = np.asarray(mask_logits, dtype=np.float32)
        if logits.shape != (256, 256):
            raise SeerError(
                f"mask_logits must be a (256, 256) array (a Mask's logits), got shape {logits.shape}"
            )
        if not np.isfinite(logits).all():
            raise SeerError("mask_logits holds NaN or infinite values")
        logits = logits.ravel().tolist()
    if not clicks and not rects and logits is None:
        raise SeerError(
            "segment: give points, boxes or mask_logits (generate_masks finds every object)"
        )
    width, height, masks = native.segment(_one(native, image), clicks, rects, logits, multimask)
    return [
        Mask(obj, iou, _mask(pixels, height, width), matrix(raw, 256, 256))
        for (obj, iou), pixels, raw in masks
    ]


def generate_masks(native: _seer.Model, image: ImageInput, **options: Any) -> List[GeneratedMask]:
    counts = (
        ("points_per_side", 1024),
        ("crop_n_layers", None),
        ("crop_n_points_downscale_factor", None),
    )
    for name, most in counts:
        low = 0 if name == "crop_n_layers" else 1
        options[name] = integer(name, options[name], low, most)
    for name in (
        "pred_iou_thresh",
        "stability_score_thresh",
        "stability_score_offset",
        "box_nms_thresh",
        "crop_overlap_ratio",
    ):
        options[name] = number(name, options[name])
    if not 0.0 < options["box_nms_thresh"] <= 1.0:
        raise SeerError(f"box_nms_thresh must be an IoU in (0, 1], got {options['box_nms_thresh']}")
    if not 0.0 <= options["crop_overlap_ratio"] < 1.0:
        raise SeerError(
            f"crop_overlap_ratio must be in [0, 1), got {options['crop_overlap_ratio']}"
        )
    width, height, masks = native.generate_masks(
        _one(native, image),
        options["points_per_side"],
        options["pred_iou_thresh"],
        options["stability_score_thresh"],
        options["stability_score_offset"],
        options["box_nms_thresh"],
        options["crop_n_layers"],
        options["crop_overlap_ratio"],
        options["crop_n_points_downscale_factor"],
    )
    return [
        GeneratedMask(_mask(pixels, height, width), iou, stability, tuple(box), tuple(crop), point)
        for (iou, stability, box, crop, point), pixels, _ in masks
    ]


def _finish(results: List[Any], failures: List[Optional[Tuple[str, str]]], stop: bool) -> Any:
    """A batch call's results, raising the first failure (``errors="raise"``)
    or with each input's message (``errors="return"``)."""
    if stop:
        raise_first(failures)
        return results
    return results, messages(failures)


def _one(native: _seer.Model, image: ImageInput) -> Any:
    """One image as the native module takes it."""
    return native_inputs([image], native.max_pixels, "image")[0]


def _mask(pixels: bytearray, height: int, width: int) -> np.ndarray:
    return np.frombuffer(pixels, dtype=np.bool_).reshape(height, width)


def _counts(**counts: Optional[int]) -> List[Optional[int]]:
    """Generation counts as the native module takes them: None, or ints of
    at least 1."""
    return [None if v is None else integer(name, v, 1) for name, v in counts.items()]


def _point(i: int, point: Sequence[float]) -> Tuple[float, float, bool]:
    """``(x, y)`` (a foreground click) or ``(x, y, label)`` with label 1
    (foreground) or 0 (background)."""
    values = _numbers(f"points[{i}]", point, (2, 3), "(x, y) or (x, y, label)")
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        raise SeerError(f"points[{i}]: the label must be 1 (foreground) or 0 (background)")
    return values[0], values[1], len(values) == 2 or values[2] == 1.0


def _box(i: int, box: Sequence[float]) -> Tuple[float, float, float, float]:
    x0, y0, x1, y1 = _numbers(f"boxes[{i}]", box, (4,), "(x0, y0, x1, y1)")
    return x0, y0, x1, y1


def _numbers(
    name: str, values: Sequence[float], counts: Tuple[int, ...], shape: str
) -> List[float]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be {shape}, got a {type(values).__name__}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{name} must be {shape}, got {type(values).__name__}") from None
    if len(items) not in counts:
        raise SeerError(f"{name} must be {shape}: {len(items)} numbers given")
    return [number(f"{name}[{j}]", v) for j, v in enumerate(items)]
