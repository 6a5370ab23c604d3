"""``seer.Index``: search an index that ``seer index`` made, as ``seer search`` does,
find its near-duplicates as ``seer dupes`` does, and read its vectors."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _seer
from ._checks import ffmpeg_path, flag, integer, load_defaults, matrix, number, strings
from ._checks import texts as check_texts
from ._seer import SeerError

if TYPE_CHECKING:
    from ._model import Model

PathLike = Union[str, "os.PathLike[str]"]

_MODES = ("auto", "vector", "hybrid", "words")


@dataclass(frozen=True)
class Hit:
    """One result of :meth:`Index.search`, as ``seer search --json`` gives it."""

    #: The indexed file.
    path: str
    #: Cosine similarity to the query (BM25 in a words search); None where the
    #: ranking has none (a hybrid hit found by its caption alone).
    score: Optional[float]
    #: For a video: the time (seconds) of its best-matching frame.
    time: Optional[float] = None
    #: The file's caption, where the index holds captions.
    caption: Optional[str] = None
    #: The caption's BM25 score (hybrid and words searches).
    bm25: Optional[float] = None
    #: The reciprocal-rank-fusion score (hybrid searches).
    fused: Optional[float] = None
    #: Which rankings found it: ``vector``, ``words`` (hybrid and words searches).
    matched: Tuple[str, ...] = ()
    #: With ``rerank``: the matching head's probability that the query's words
    #: describe the file (None below ``rerank_depth``, or where it could not be
    #: read, which a warning says).
    itm_probability: Optional[float] = None
    #: With ``rerank``: the matching model's contrastive cosine.
    itc_similarity: Optional[float] = None


@dataclass(frozen=True)
class DuplicateGroup:
    """Near-duplicate files, as one line of ``seer dupes --json``."""

    #: The group's files; the first is the one the scores compare with.
    paths: Tuple[str, ...]
    #: Each file's cosine similarity to the first (1.0 for the first itself).
    scores: Tuple[float, ...]


@dataclass(frozen=True)
class DuplicateThreshold:
    """The similarity at or above which two files are duplicates, and the
    measurement that chose it: altered copies of indexed photos (halved,
    cropped to 90%, brightened) embedded and compared with their originals."""

    #: The cosine similarity that catches 99% of the altered copies.
    threshold: float
    #: Indexed photos the measurement altered.
    photos: int
    #: Altered copies measured, and their median similarity to their original.
    copies: int
    copies_median: float
    #: Pairs of different sampled photos, how many of them score at or above
    #: ``threshold`` (false matches, unless the photos really are
    #: duplicates), and the highest of their similarities (-1 where there is
    #: no pair: one photo measured).
    distinct_pairs: int
    distinct_above: int
    distinct_max: float


@dataclass(frozen=True)
class IndexModel:
    """One model whose vectors the index holds."""

    name: str
    dim: int
    vectors: int


class Index:
    """An index folder made by ``seer index`` (``$SEER_INDEX`` or
    ``~/.local/share/seer/index`` by default, as the command line), opened
    read-only: ``seer index`` may update it meanwhile, and each search sees
    its latest finished run. (A duplicate threshold measured by
    :meth:`duplicate_threshold` is the one thing written to it, as by ``seer
    dupes``.)

    ``model`` picks which of the index's models' vectors to search (default:
    its only one). A text or image query embeds with that model, loaded at the
    first such search with ``device``, ``precision``, ``tokenizer`` and
    ``offline`` as for :class:`seer.Model`; searches by indexed files
    (``like``) or by words need no model. An index is safe to share between
    threads.
    """

    __slots__ = ("_native",)
    _native: _seer.Index

    def __init__(
        self,
        path: Optional[PathLike] = None,
        *,
        model: Optional[str] = None,
        device: str = "cpu",
        precision: str = "f32",
        tokenizer: Optional[PathLike] = None,
        offline: Optional[bool] = None,
        batch_size: int = 32,
        max_pixels: Optional[int] = None,
    ) -> None:
        if path is None:
            path = default_index_dir()
        offline, tokenizer = load_defaults(offline, tokenizer)
        batch_size = integer("batch_size", batch_size, 1)
        if max_pixels is not None:
            max_pixels = integer("max_pixels", max_pixels, 1)
        if model is not None and not isinstance(model, str):
            model = os.fspath(model)
        native = _seer.Index(
            os.fsdecode(os.fspath(path)),
            model,
            (device, precision, None if tokenizer is None else os.fspath(tokenizer)),
            bool(offline),
            batch_size,
            max_pixels,
        )
        object.__setattr__(self, "_native", native)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("seer.Index is immutable")

    def __repr__(self) -> str:
        return repr(self._native)

    def __len__(self) -> int:
        """Files in the index."""
        return len(self._native)

    @property
    def path(self) -> str:
        """The index folder."""
        return os.fspath(self._native.dir)

    @property
    def models(self) -> List[IndexModel]:
        """The models whose vectors the index holds."""
        return [IndexModel(*m) for m in self._native.models()]

    def search(
        self,
        text: Optional[str] = None,
        *,
        images: Sequence[PathLike] = (),
        like: Sequence[PathLike] = (),
        add: Sequence[str] = (),
        subtract: Sequence[str] = (),
        subtract_images: Sequence[PathLike] = (),
        k: int = 20,
        min_score: Optional[float] = None,
        path: Optional[str] = None,
        mode: str = "auto",
        rerank: Optional["Model"] = None,
        rerank_depth: int = 20,
        ffmpeg: Optional[PathLike] = None,
    ) -> List[Hit]:
        """The indexed photos and videos that best match a query, best first,
        as ``seer search`` ranks them (the same flags by the same names).

        The query adds ``text``, the ``add`` texts, example ``images`` (image
        files) and indexed files ``like`` (their stored vectors), and subtracts
        the ``subtract`` texts and ``subtract_images``. ``k`` results at most,
        each at least ``min_score`` similar (a cosine, -1 to 1), whose path
        matches the glob ``path`` (``"*.png"``, ``"**/2023/**"``). ``mode``:
        ``auto`` (hybrid when the index has captions and the query has words,
        else vector), ``vector``, ``hybrid`` or ``words`` (captions only).
        A video is found by its best frame (:attr:`Hit.time`).

        ``rerank``, a BLIP retrieval :class:`seer.Model` (``blip-itm-base``),
        puts the best ``rerank_depth`` hits (1 to 100) in order of its
        image-text matching probability for the query's words, which reads
        word order ("a horse riding an astronaut"), as ``seer search
        --rerank`` does; a video hit is read as its best frame through
        ``ffmpeg`` (default ``$SEER_FFMPEG``, else on PATH). A hit that cannot
        be read keeps no score, follows the reranked ones, and is named in a
        warning.
        """
        texts = [] if text is None else [text]
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        texts += strings("add", add, "a list of texts")
        subtract = strings("subtract", subtract, "a list of texts")
        check_texts("text", texts)
        check_texts("subtract", subtract)
        k = integer("k", k, 1)
        if min_score is not None:
            min_score = number("min_score (a cosine similarity)", min_score, -1.0, 1.0)
        if mode not in _MODES:
            raise SeerError(f"unknown mode {mode!r} ({', '.join(_MODES)})")
        if path is not None and not isinstance(path, str):
            raise TypeError(f"path must be a glob (str), got {type(path).__name__}")
        native_rerank = None
        if rerank is not None:
            from ._model import Model

            if not isinstance(rerank, Model):
                raise TypeError(f"rerank must be a seer.Model, got {type(rerank).__name__}")
            native_rerank = rerank._native
            rerank_depth = integer("rerank_depth", rerank_depth, 1, 100)
        rows = self._native.search(
            texts,
            _paths("images", images),
            _paths("like", like),
            subtract,
            _paths("subtract_images", subtract_images),
            mode,
            k,
            min_score,
            path,
            native_rerank,
            rerank_depth,
            ffmpeg_path(ffmpeg),
        )
        hits = []
        for p, score, time, caption, bm25, fused, matched, (itm, unread) in rows:
            shown = os.fspath(p)
            if unread is not None:
                warnings.warn(f"{shown}: {unread} (not reranked)", stacklevel=2)
            hits.append(
                Hit(
                    shown, score, time, caption, bm25, fused, tuple(matched),
                    *(itm if itm is not None else (None, None)),
                )  # fmt: skip
            )
        return hits


    def vectors(self) -> Tuple[List[str], np.ndarray]:
        """The indexed files and their vectors as the index stores them (of
        the model chosen at opening; unit length, as ``seer index`` stores
        them, so a dot product is their cosine similarity): the paths, and a
        float32 array (files, dim) whose rows follow them. A video's row is
        its frames' mean."""
        paths, buffer, dim = self._native.vectors()
        return [os.fspath(p) for p in paths], matrix(buffer, len(paths), dim)

    def duplicate_threshold(
        self, *, calibrate: bool = False, sample: int = 100
    ) -> DuplicateThreshold:
        """The threshold :meth:`duplicates` uses unless given one, as ``seer
        dupes`` chooses it: the one measured before for the index's model,
        else (or with ``calibrate``) measured now on ``sample`` indexed photos
        with the model (loaded as for :meth:`search`) and remembered in the
        index (a warning says when it cannot be, as on a read-only disk).
        Ctrl-C stops a measurement at its next batch of photos."""
        sample = integer("sample", sample, 1)
        calibrate = flag("calibrate", calibrate)
        measured, not_remembered = self._native.duplicate_threshold(calibrate, sample)
        _warn_not_remembered(not_remembered)
        return DuplicateThreshold(*measured)

    def duplicates(
        self,
        threshold: Optional[float] = None,
        *,
        calibrate: bool = False,
        sample: int = 100,
        neighbours: int = 10,
        exact: bool = False,
    ) -> List[DuplicateGroup]:
        """Groups of near-duplicate files, the largest first, as ``seer dupes``
        finds them: files whose cosine similarity is at least ``threshold``
        (default: :meth:`duplicate_threshold`'s, with ``calibrate`` and
        ``sample`` as there) to one of their ``neighbours`` nearest, grouped
        transitively. The nearest are found through the index's approximate
        (HNSW) graph where it has one (50,000 vectors and more), far faster
        than comparing every pair, which ``exact`` asks for. Ctrl-C stops it
        at its next batch of photos or block of files."""
        if threshold is not None:
            threshold = number("threshold (a cosine similarity)", threshold, -1.0, 1.0)
        sample = integer("sample", sample, 1)
        neighbours = integer("neighbours", neighbours, 1)
        calibrate = flag("calibrate", calibrate)
        exact = flag("exact", exact)
        groups, not_remembered = self._native.duplicates(
            threshold, calibrate, sample, neighbours, exact
        )
        _warn_not_remembered(not_remembered)
        return [
            DuplicateGroup(tuple(os.fspath(p) for p in paths), tuple(scores))
            for paths, scores in groups
        ]


def _warn_not_remembered(cause: Optional[str]) -> None:
    if cause is not None:
        warnings.warn(
            f"{cause}; the duplicate threshold was not remembered and is measured again next time",
            stacklevel=3,
        )


def default_index_dir() -> str:
    """Where ``seer index`` keeps its index unless told: ``$SEER_INDEX``, else
    ``$XDG_DATA_HOME/seer/index``, else ``~/.local/share/seer/index``."""
    chosen = os.environ.get("SEER_INDEX")
    if chosen:
        return chosen
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data, "seer", "index")


def _paths(name: str, values: Sequence[PathLike]) -> List[str]:
    if isinstance(values, (str, bytes, os.PathLike)):
        raise TypeError(f"{name}: pass a list of paths (wrap a single path in a list)")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name}[{i}] is a {type(value).__name__}, not a path")
        path = os.fspath(value)
        out.append(os.fsdecode(path) if isinstance(path, bytes) else path)
    return out
