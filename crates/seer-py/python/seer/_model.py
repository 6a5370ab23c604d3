"""``seer.Model``: a loaded model, immutable and safe to share between threads."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    List,
    Literal,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

import numpy as np

from . import _seer, _tasks
from ._checks import (
    check_text,
    ffmpeg_path,
    flag,
    integer,
    load_defaults,
    matrix,
    messages,
    number,
    raise_first,
    raise_unencodable,
    stop_on_error,
    strings,
)
from ._inputs import ImageInput, native_inputs
from ._seer import SeerError
from ._tasks import Detection, GeneratedMask, Mask, Matches

if TYPE_CHECKING:
    import pyarrow as pa

#: What a failed input does: raise SeerError, or come back as a NaN row and a message.
ErrorMode = Literal["raise", "return"]

#: Which image features ``embed_images`` gives (``seer embed --features``).
Features = Literal["cls", "mean", "patch"]



@dataclass(frozen=True)
class Prediction:
    """One class of a zero-shot classification, as ``seer classify --json`` gives it."""

    label: str
    #: The label's position in the labels given.
    index: int
    probability: float


class Model:
    """A model loaded as ``seer --model`` loads it.

    ``name_or_path`` is a local folder (``str``, ``bytes`` or ``os.PathLike``; its
    path need not be UTF-8), an alias (``ViT-B-32``, see ``seer models``)
    or a Hugging Face hub id; hub models come from the Hugging Face cache and are
    downloaded when missing, unless ``offline`` (default: ``$HF_HUB_OFFLINE``).
    ``device`` is ``cpu``, ``cuda`` or ``cuda:N`` (a build with the ``cuda``
    feature); ``precision`` is ``f32``, ``bf16`` or ``int8`` (CPU matmul weights).
    ``tokenizer`` (default: ``$SEER_TOKENIZER``) names a tokenizer file for
    model folders without one. ``batch_size`` is the number of images per model
    batch (``--batch-size``), ``max_pixels`` the largest image accepted
    (``--max-pixels``); both are at least 1.

    A model never changes after loading: share one between threads. Every call
    releases the GIL while seer works. ``copy.copy`` and ``copy.deepcopy`` give
    the model itself (as for any immutable object). A model cannot be pickled
    (``TypeError``): it is not sent between processes, each process loads its
    own from ``model.name`` (as :mod:`seer.ray` and :mod:`seer.spark` do) --
    re-loading it silently on unpickling would read the weights again, from a
    folder or cache the other process may not have. Errors are
    :class:`seer.SeerError`; an argument of the wrong type is a ``TypeError``.
    """

    __slots__ = ("_native",)
    _native: _seer.Model

    def __init__(
        self,
        name_or_path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"],
        device: str = "cpu",
        precision: str = "f32",
        *,
        batch_size: int = 32,
        tokenizer: Union[str, "os.PathLike[str]", None] = None,
        offline: Optional[bool] = None,
        max_pixels: Optional[int] = None,
    ) -> None:
        offline, tokenizer = load_defaults(offline, tokenizer)
        native = _seer.Model(
            _path(name_or_path),
            device,
            precision,
            batch_size=batch_size,
            tokenizer=None if tokenizer is None else _path(tokenizer),
            offline=offline,
            max_pixels=max_pixels,
        )
        object.__setattr__(self, "_native", native)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("seer.Model is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("seer.Model is immutable")

    def __repr__(self) -> str:
        return repr(self._native)

    def __copy__(self) -> "Model":
        return self

    def __deepcopy__(self, memo: object) -> "Model":
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(
            "a seer.Model cannot be pickled: each process loads its own model "
            f"(pass its name, seer.Model({self.name!r}, ...), to the other process)"
        )

    def __reduce__(self) -> NoReturn:
        return self.__reduce_ex__(2)

    @property
    def dim(self) -> int:
        """Length of the embeddings (0 for a model that gives none: BLIP,
        OWL-ViT, SAM)."""
        return self._native.dim

    @property
    def name(self) -> str:
        """The hub id, or the model folder's full path (as ``os.fsdecode`` gives
        it where the path is not UTF-8: ``Model(model.name)`` loads it again)."""
        return self._native.name

    @property
    def family(self) -> str:
        """The model's family: ``clip``, ``siglip``, ``dinov2`` (embeddings),
        ``blip`` (:meth:`caption`, :meth:`ask`, :meth:`match`), ``owlvit``
        (:meth:`detect`), ``sam`` (:meth:`segment`, :meth:`generate_masks`)."""
        return self._native.family

    @property
    def patch_grid(self) -> Optional[Tuple[int, int]]:
        """``(h, w)`` patch tokens per image for models with patch features
        (DINOv2: ``embed_images(features="patch")``), else None."""
        return self._native.patch_grid

    @property
    def batch_size(self) -> int:
        """Images per model batch."""
        return self._native.batch_size

    @overload
    def embed_images(
        self,
        inputs: Sequence[ImageInput],
        *,
        errors: Literal["raise"] = ...,
        normalize: bool = ...,
        features: Features = ...,
    ) -> np.ndarray: ...

    @overload
    def embed_images(
        self,
        inputs: Sequence[ImageInput],
        *,
        errors: Literal["return"],
        normalize: bool = ...,
        features: Features = ...,
    ) -> Tuple[np.ndarray, List[Optional[str]]]: ...

    def embed_images(
        self,
        inputs: Sequence[ImageInput],
        *,
        errors: ErrorMode = "raise",
        normalize: bool = True,
        features: Features = "cls",
    ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[str]]]]:
        """Embeds images: a float32 array (N, dim), rows in input order.

        Each input is a file path (``str`` or ``os.PathLike``), the bytes of an
        image file, an HxWx3 uint8 RGB numpy array, or a PIL image; ``inputs``
        is any iterable of them (a 1-D numpy array of paths too, ``str`` or
        ``object`` dtype), or an N x H x W x 3 uint8 array. Rows are
        L2-normalised (``normalize=False``: the raw projected features, as
        ``seer embed --raw``) and equal ``seer embed``'s bit for bit.

        ``features`` as ``seer embed --features``: ``cls``, the model's
        embedding (DINOv2: its CLS token); ``mean``, the mean of the patch
        tokens; ``patch``, every patch token as an (N, h, w, dim) array, never
        normalised (:attr:`patch_grid` is ``(h, w)``). ``mean`` and ``patch``
        need a model with patch tokens (DINOv2).

        ``errors="raise"``: an input that cannot be embedded raises
        :class:`SeerError` naming its index, the file and the cause.
        ``errors="return"``: returns ``(array, errors)``, where a failed input's
        row is NaN and ``errors[i]`` says why (``None`` for rows that worked).
        """
        stop = stop_on_error(errors)
        normalize = flag("normalize", normalize)
        native = native_inputs(inputs, self._native.max_pixels)
        # An unknown `features` is refused natively, before any work.
        buffer, failures = self._native.embed_images(native, normalize, stop, features)
        if stop:
            raise_first(failures)
        array = self._features(buffer, len(native), features)
        if stop:
            return array
        return array, messages(failures)

    def embed_video(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        frame_interval: float = 2.0,
        max_frames: int = 1800,
        normalize: bool = True,
        features: Features = "cls",
        ffmpeg: Union[str, "os.PathLike[str]", None] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Embeds the frames of a video, as ``seer embed`` embeds a video given
        to it: one frame every ``frame_interval`` seconds (0.05 to 86400), at
        most ``max_frames`` (a longer video is sampled more sparsely), each
        frame through the model's own preprocessing as a photo would be.

        Returns ``(times, vectors)``: the frames' times in seconds (float64,
        (F,)) and their embeddings (float32, (F, dim); ``features`` and
        ``normalize`` as for :meth:`embed_images`). Needs ffmpeg (``ffmpeg``,
        else ``$SEER_FFMPEG``, else ``ffmpeg`` on PATH; ffprobe beside it). A
        video that cannot be read raises :class:`SeerError` naming it.
        """
        normalize = flag("normalize", normalize)
        frame_interval = number("frame_interval (seconds)", frame_interval, 0.05, 86_400)
        max_frames = integer("max_frames", max_frames, 1, 1_000_000)
        times, buffer = self._native.embed_video(
            _path(path),
            frame_interval,
            max_frames,
            ffmpeg_path(ffmpeg),
            normalize,
            features,
        )
        return np.asarray(times, dtype=np.float64), self._features(buffer, len(times), features)

    def _features(self, buffer: bytearray, rows: int, features: str) -> np.ndarray:
        """The native rows of ``features`` as an array: (rows, dim), or
        (rows, h, w, dim) for ``patch``."""
        if features == "patch":
            grid = self._native.patch_grid or (0, 0)
            return matrix(buffer, rows, -1 if rows else self.dim).reshape(rows, *grid, self.dim)
        return matrix(buffer, rows, self.dim)

    def embed_texts(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        """Embeds texts: a float32 array (N, dim), equal to ``seer embed --text``'s."""
        if isinstance(texts, str):
            raise TypeError("texts: pass a list of strings (wrap a single text in a list)")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str")
        normalize = flag("normalize", normalize)
        try:
            buffer = self._native.embed_texts(texts, normalize)
        except UnicodeEncodeError:
            raise_unencodable("texts", texts)
            raise
        return matrix(buffer, len(texts), self.dim)

    @overload
    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        *,
        top_k: Optional[int] = ...,
        templates: Union[str, "os.PathLike[str]", Sequence[str]] = ...,
        errors: Literal["raise"] = ...,
    ) -> List[List[Prediction]]: ...

    @overload
    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        *,
        top_k: Optional[int] = ...,
        templates: Union[str, "os.PathLike[str]", Sequence[str]] = ...,
        errors: Literal["return"],
    ) -> Tuple[List[Optional[List[Prediction]]], List[Optional[str]]]: ...

    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        *,
        top_k: Optional[int] = 5,
        templates: Union[str, "os.PathLike[str]", Sequence[str]] = "default",
        errors: ErrorMode = "raise",
    ) -> Union[
        List[List[Prediction]],
        Tuple[List[Optional[List[Prediction]]], List[Optional[str]]],
    ]:
        """Zero-shot classifies images as ``seer classify`` does.

        Returns, per image, its ``top_k`` most probable labels, best first
        (``top_k`` at least 1; ``None``: every label). Each
        class is the renormalised mean of its prompts' embeddings; ``templates``
        is ``default`` (``a photo of a {}.``), ``imagenet`` (OpenAI's 7), a file
        (one per line, a JSON list, or ``prompts.json#DATASET``), or a list of
        templates with ``{}`` for the label. ``errors`` as for
        :meth:`embed_images`; with ``"return"`` a failed image's entry is ``None``.
        A bad ``top_k`` value is a :class:`SeerError`, an argument of the wrong
        type (``labels``, ``templates``, ``top_k``) a ``TypeError``.
        """
        stop = stop_on_error(errors)
        labels = strings("labels", labels, "a list of class names")
        top_k = _top_k(top_k, len(labels))
        templates = _templates(templates)
        native = native_inputs(images, self._native.max_pixels)
        try:
            predictions, failures = self._native.classify(native, labels, templates, top_k, stop)
        except UnicodeEncodeError:
            raise_unencodable("labels", labels)
            if isinstance(templates, str):
                check_text("templates", templates)
            else:
                raise_unencodable("templates", templates)
            raise
        if stop:
            raise_first(failures)
        results = [
            None if classes is None else [Prediction(*c) for c in classes]
            for classes in predictions
        ]
        if stop:
            return results  # type: ignore[return-value]
        return results, messages(failures)

    @overload
    def caption(
        self,
        images: Sequence[ImageInput],
        *,
        prompt: Optional[str] = ...,
        beams: Optional[int] = ...,
        max_new_tokens: Optional[int] = ...,
        errors: Literal["raise"] = ...,
    ) -> List[str]: ...

    @overload
    def caption(
        self,
        images: Sequence[ImageInput],
        *,
        prompt: Optional[str] = ...,
        beams: Optional[int] = ...,
        max_new_tokens: Optional[int] = ...,
        errors: Literal["return"],
    ) -> Tuple[List[Optional[str]], List[Optional[str]]]: ...

    def caption(
        self,
        images: Sequence[ImageInput],
        *,
        prompt: Optional[str] = None,
        beams: Optional[int] = None,
        max_new_tokens: Optional[int] = None,
        errors: ErrorMode = "raise",
    ) -> Union[List[str], Tuple[List[Optional[str]], List[Optional[str]]]]:
        """A caption for each image, as ``seer caption`` writes it (a BLIP
        captioning model, e.g. ``blip-base``).

        ``prompt`` starts every caption (``"a picture of"``); ``beams`` is the
        beam width (1, greedy, by default) and ``max_new_tokens`` the most
        tokens written after the prompt (the checkpoint's defaults when None).
        Images and ``errors`` as for :meth:`embed_images`; with ``"return"`` a
        failed image's caption is ``None``.
        """
        return _tasks.caption(self._native, images, prompt, beams, max_new_tokens, errors)

    @overload
    def ask(
        self,
        images: Sequence[ImageInput],
        question: Union[str, Sequence[str]],
        *,
        beams: Optional[int] = ...,
        max_new_tokens: Optional[int] = ...,
        errors: Literal["raise"] = ...,
    ) -> List[str]: ...

    @overload
    def ask(
        self,
        images: Sequence[ImageInput],
        question: Union[str, Sequence[str]],
        *,
        beams: Optional[int] = ...,
        max_new_tokens: Optional[int] = ...,
        errors: Literal["return"],
    ) -> Tuple[List[Optional[str]], List[Optional[str]]]: ...

    def ask(
        self,
        images: Sequence[ImageInput],
        question: Union[str, Sequence[str]],
        *,
        beams: Optional[int] = None,
        max_new_tokens: Optional[int] = None,
        errors: ErrorMode = "raise",
    ) -> Union[List[str], Tuple[List[Optional[str]], List[Optional[str]]]]:
        """Answers a question about each image, as ``seer ask`` does (a BLIP
        VQA model, e.g. ``blip-vqa-base``): one question for every image, or a
        list with one per image. ``beams``, ``max_new_tokens`` and ``errors``
        as for :meth:`caption`.
        """
        return _tasks.ask(self._native, images, question, beams, max_new_tokens, errors)

    @overload
    def match(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        *,
        errors: Literal["raise"] = ...,
    ) -> Matches: ...

    @overload
    def match(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        *,
        errors: Literal["return"],
    ) -> Tuple[Matches, List[Optional[str]]]: ...

    def match(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        *,
        errors: ErrorMode = "raise",
    ) -> Union[Matches, Tuple[Matches, List[Optional[str]]]]:
        """How well each text describes each image, as ``seer match`` scores
        them (a BLIP retrieval model, e.g. ``blip-itm-base``): a
        :class:`Matches` of two float32 arrays (images, texts), the matching
        head's probability (reads word order) and the contrastive cosine.
        ``errors`` as for :meth:`embed_images` (a failed image's rows NaN).
        """
        return _tasks.match(self._native, images, texts, errors)

    @overload
    def detect(
        self,
        images: Sequence[ImageInput],
        labels: Optional[Sequence[str]] = ...,
        *,
        image_query: Optional[ImageInput] = ...,
        threshold: Optional[float] = ...,
        nms: float = ...,
        errors: Literal["raise"] = ...,
    ) -> List[List[Detection]]: ...

    @overload
    def detect(
        self,
        images: Sequence[ImageInput],
        labels: Optional[Sequence[str]] = ...,
        *,
        image_query: Optional[ImageInput] = ...,
        threshold: Optional[float] = ...,
        nms: float = ...,
        errors: Literal["return"],
    ) -> Tuple[List[Optional[List[Detection]]], List[Optional[str]]]: ...

    def detect(
        self,
        images: Sequence[ImageInput],
        labels: Optional[Sequence[str]] = None,
        *,
        image_query: Optional[ImageInput] = None,
        threshold: Optional[float] = None,
        nms: float = 0.3,
        errors: ErrorMode = "raise",
    ) -> Union[List[List[Detection]], Tuple[List[Optional[List[Detection]]], List[Optional[str]]]]:
        """Boxes of what ``labels`` name, or of more of what ``image_query``
        (one image) shows, in each image, best first, as ``seer detect`` finds
        them (an OWL-ViT or OWLv2 model, e.g. ``owlv2-b16``). The labels are
        embedded once for the whole call. ``threshold`` drops boxes scoring
        below it (0.1 for labels, 0.0 for an image query, as transformers);
        ``nms`` is the per-label non-maximum suppression IoU (1 turns it off).
        ``errors`` as for :meth:`embed_images`; with ``"return"`` a failed
        image's entry is ``None``.
        """
        return _tasks.detect(self._native, images, labels, image_query, threshold, nms, errors)

    def segment(
        self,
        image: ImageInput,
        *,
        points: Optional[Sequence[Sequence[float]]] = None,
        boxes: Optional[Sequence[Sequence[float]]] = None,
        mask_logits: Optional[np.ndarray] = None,
        multimask: bool = True,
    ) -> List[Mask]:
        """Masks of the object(s) a prompt points at in one image, as ``seer
        segment --point/--box`` cuts them (a SAM model, e.g. ``sam-vit-base``).

        ``points`` are clicks ``(x, y)`` (foreground) or ``(x, y, label)``
        (label 1 foreground, 0 background) in the image's pixels; each box
        ``(x0, y0, x1, y1)`` is an object of its own (the points add to each);
        ``mask_logits`` is an earlier :class:`Mask`'s ``logits``, to refine it.
        ``multimask`` gives three masks per object (the model's guesses at
        part, object and whole), else one. The image is embedded once for
        all its objects, and the model keeps the last image's embedding: a
        further prompt on the same image (its path, bytes or array, by content)
        runs only SAM's prompt encoder and mask decoder. A bad image raises
        :class:`SeerError`.
        """
        return _tasks.segment(self._native, image, points, boxes, mask_logits, multimask)

    def generate_masks(
        self,
        image: ImageInput,
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
    ) -> List[GeneratedMask]:
        """Every object in one image, without a prompt, as ``seer segment
        --auto`` finds them (transformers' mask-generation pipeline, with its
        defaults): a grid of points, masks filtered by predicted IoU and
        stability (0 turns a filter off), deduplicated by box NMS, best first.
        """
        return _tasks.generate_masks(
            self._native,
            image,
            points_per_side=points_per_side,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
        )

    def embed_arrow(
        self,
        table: Union["pa.Table", "pa.RecordBatch"],
        image_column: str = "jpg",
        key_column: Optional[str] = "__key__",
    ) -> "pa.Table":
        """Embeds a column of encoded images (a webdataset shard read with pyarrow).

        Returns a table with one row per input row: ``key`` (string; the row
        number when ``key_column`` is None), ``embedding``
        (``fixed_size_list<float32>[dim]``, null where the image failed) and
        ``error`` (null where it worked). A bad image never stops the batch.
        """
        from ._arrow import embed_arrow

        return embed_arrow(self, table, image_column, key_column)


def _path(path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]) -> str:
    """A path as a ``str`` (``bytes`` as ``os.fsdecode`` gives them, which the
    native module turns back into the same bytes)."""
    path = os.fspath(path)
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _top_k(top_k: Optional[int], labels: int) -> int:
    """``top_k`` checked, ``None`` as every label; at most the number of labels
    (more would give the same), so that the native ``usize`` always takes it."""
    if top_k is None:
        return max(labels, 1)
    try:
        top_k = operator.index(top_k)
    except TypeError:
        raise TypeError(
            f"top_k must be an int (or None for every label), got {type(top_k).__name__}"
        ) from None
    if top_k < 1:
        raise SeerError(f"top_k must be at least 1 (or None for every label), got {top_k}")
    return min(top_k, max(labels, 1))


def _templates(
    templates: Union[str, "os.PathLike[str]", Sequence[str]],
) -> Union[str, List[str]]:
    """A built-in set or file's name as a ``str``, or a list of templates."""
    if isinstance(templates, os.PathLike):
        templates = os.fspath(templates)
        if isinstance(templates, bytes):
            templates = os.fsdecode(templates)
    if isinstance(templates, str):
        if not templates:
            raise SeerError(
                "templates is an empty string: pass default, imagenet, a file's path "
                "or a list of templates (str with {})"
            )
        return templates
    return strings(
        "templates",
        templates,
        "default, imagenet, a file's path (str) or a list of templates (str with {})",
    )
