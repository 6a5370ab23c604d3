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

from . import _seer
from ._inputs import ImageInput, native_inputs
from ._seer import SeerError

if TYPE_CHECKING:
    import pyarrow as pa

#: What a failed input does: raise SeerError, or come back as a NaN row and a message.
ErrorMode = Literal["raise", "return"]

_TRUE = {"1", "true", "t", "yes", "y", "on"}


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
        if offline is None:
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
        if tokenizer is None:
            tokenizer = os.environ.get("SEER_TOKENIZER") or None
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
        """Length of the embeddings."""
        return self._native.dim

    @property
    def name(self) -> str:
        """The hub id, or the model folder's full path (as ``os.fsdecode`` gives
        it where the path is not UTF-8: ``Model(model.name)`` loads it again)."""
        return self._native.name

    @property
    def family(self) -> str:
        """The model's family: ``clip``, ``siglip``, ``dinov2``."""
        return self._native.family

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
    ) -> np.ndarray: ...

    @overload
    def embed_images(
        self,
        inputs: Sequence[ImageInput],
        *,
        errors: Literal["return"],
        normalize: bool = ...,
    ) -> Tuple[np.ndarray, List[Optional[str]]]: ...

    def embed_images(
        self,
        inputs: Sequence[ImageInput],
        *,
        errors: ErrorMode = "raise",
        normalize: bool = True,
    ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[str]]]]:
        """Embeds images: a float32 array (N, dim), rows in input order.

        Each input is a file path (``str`` or ``os.PathLike``), the bytes of an
        image file, an HxWx3 uint8 RGB numpy array, or a PIL image; ``inputs``
        is any iterable of them (a 1-D numpy array of paths too, ``str`` or
        ``object`` dtype), or an N x H x W x 3 uint8 array. Rows are
        L2-normalised (``normalize=False``: the raw projected features, as
        ``seer embed --raw``) and equal ``seer embed``'s bit for bit.

        ``errors="raise"``: an input that cannot be embedded raises
        :class:`SeerError` naming its index, the file and the cause.
        ``errors="return"``: returns ``(array, errors)``, where a failed input's
        row is NaN and ``errors[i]`` says why (``None`` for rows that worked).
        """
        stop = _stop_on_error(errors)
        normalize = _flag("normalize", normalize)
        native = native_inputs(inputs, self._native.max_pixels)
        buffer, failures = self._native.embed_images(native, normalize, stop)
        if stop:
            _raise_first(failures)
        array = _matrix(buffer, len(native), self.dim)
        if stop:
            return array
        return array, _messages(failures)

    def embed_texts(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        """Embeds texts: a float32 array (N, dim), equal to ``seer embed --text``'s."""
        if isinstance(texts, str):
            raise TypeError("texts: pass a list of strings (wrap a single text in a list)")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str")
        normalize = _flag("normalize", normalize)
        try:
            buffer = self._native.embed_texts(texts, normalize)
        except UnicodeEncodeError:
            _raise_unencodable("texts", texts)
            raise
        return _matrix(buffer, len(texts), self.dim)

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
        stop = _stop_on_error(errors)
        labels = _strings("labels", labels, "a list of class names")
        top_k = _top_k(top_k, len(labels))
        templates = _templates(templates)
        native = native_inputs(images, self._native.max_pixels)
        try:
            predictions, failures = self._native.classify(native, labels, templates, top_k, stop)
        except UnicodeEncodeError:
            _raise_unencodable("labels", labels)
            if isinstance(templates, str):
                _check_text("templates", templates)
            else:
                _raise_unencodable("templates", templates)
            raise
        if stop:
            _raise_first(failures)
        results = [
            None if classes is None else [Prediction(*c) for c in classes]
            for classes in predictions
        ]
        if stop:
            return results  # type: ignore[return-value]
        return results, _messages(failures)

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


def _strings(name: str, values: object, what: str) -> List[str]:
    """``values`` as a list of ``str``; a ``TypeError`` naming ``name`` if not."""
    if isinstance(values, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{name}: pass {what}, not a {type(values).__name__}")
    try:
        values = list(values)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name}: pass {what}, not a {type(values).__name__}") from None
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] is a {type(value).__name__}, not a str")
    return values


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
    return _strings(
        "templates",
        templates,
        "default, imagenet, a file's path (str) or a list of templates (str with {})",
    )


def _flag(name: str, value: object) -> bool:
    """A ``bool`` argument (numpy's ``bool_`` too); a ``TypeError`` naming it if not."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _raise_unencodable(name: str, values: Sequence[str]) -> None:
    """A ``SeerError`` naming the first of ``values`` that is not valid text
    (a lone surrogate, which UTF-8 cannot hold), if one is not."""
    for i, value in enumerate(values):
        _check_text(f"{name}[{i}]", value)


def _check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = e.object[e.start : e.end]
        raise SeerError(
            f"{name} is not valid text: {bad!r} at position {e.start} "
            f"is a lone surrogate, which UTF-8 cannot hold"
        ) from None


def _stop_on_error(errors: str) -> bool:
    if errors == "raise":
        return True
    if errors == "return":
        return False
    raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")


def _matrix(buffer: bytearray, rows: int, dim: int) -> np.ndarray:
    """The native float32 rows as an (rows, dim) array, sharing their memory."""
    return np.frombuffer(buffer, dtype=np.float32).reshape(rows, dim)


def _message(index: int, name: str, cause: str) -> str:
    return f"input {index} ({name}): {cause}"


def _messages(failures: List[Optional[Tuple[str, str]]]) -> List[Optional[str]]:
    return [None if f is None else _message(i, *f) for i, f in enumerate(failures)]


def _raise_first(failures: List[Optional[Tuple[str, str]]]) -> None:
    for index, failure in enumerate(failures):
        if failure is not None:
            name, cause = failure
            error = SeerError(_message(index, name, cause))
            error.index = index
            error.input = name
            error.cause = cause
            raise error
