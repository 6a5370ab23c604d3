"""Arguments and errors as every ``seer.Model`` method checks and reports them."""

from __future__ import annotations

import math
import operator
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ._seer import SeerError


def strings(name: str, values: object, what: str) -> List[str]:
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


#: What ``$HF_HUB_OFFLINE`` counts as on (as huggingface_hub reads it).
_TRUE = {"1", "true", "t", "yes", "y", "on"}


def load_defaults(offline: Optional[bool], tokenizer: object) -> Tuple[object, object]:
    """A model load's ``offline`` and ``tokenizer`` where the caller gave
    None: ``$HF_HUB_OFFLINE`` and ``$SEER_TOKENIZER``, as the command line
    reads them."""
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    if tokenizer is None:
        tokenizer = os.environ.get("SEER_TOKENIZER") or None
    return offline, tokenizer


def ffmpeg_path(ffmpeg: object) -> Optional[str]:
    """The ffmpeg a call reads videos with: ``ffmpeg`` as a ``str`` path, else
    ``$SEER_FFMPEG`` (as the command line reads it), else None (the native
    side looks on PATH)."""
    if ffmpeg is None:
        ffmpeg = os.environ.get("SEER_FFMPEG") or None
    if ffmpeg is None:
        return None
    path = os.fspath(ffmpeg)  # type: ignore[arg-type]
    return os.fsdecode(path) if isinstance(path, bytes) else path


def texts(name: str, values: List[str]) -> None:
    """Refuses a text of ``values`` that is empty or not valid text, naming
    it ``name[i]``."""
    for i, value in enumerate(values):
        check_text(f"{name}[{i}]", value)
        if not value.strip():
            raise SeerError(f"{name}[{i}] is empty")


def integer(name: str, value: object, low: int, high: Optional[int] = None) -> int:
    """An int (numpy's too) from ``low`` to ``high``: a ``TypeError`` naming
    ``name`` for another type (``bool`` included), a ``SeerError`` outside."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if number < low or (high is not None and number > high):
        bound = f"at least {low}" if high is None else f"{low} to {high}"
        raise SeerError(f"{name} must be {bound}, got {number}")
    return number


def number(
    name: str, value: object, low: Optional[float] = None, high: Optional[float] = None
) -> float:
    """A finite real number from ``low`` to ``high`` (where given): a
    ``TypeError`` naming ``name`` for another type, a ``SeerError`` for NaN,
    an infinity or a value outside."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise SeerError(f"{name} must be a finite number, got {result}")
    if (low is not None and result < low) or (high is not None and result > high):
        raise SeerError(f"{name} must be {low:g} to {high:g}, got {result:g}")
    return result


def flag(name: str, value: object) -> bool:
    """A ``bool`` argument (numpy's ``bool_`` too); a ``TypeError`` naming it if not."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def raise_unencodable(name: str, values: Sequence[str]) -> None:
    """A ``SeerError`` naming the first of ``values`` that is not valid text
    (a lone surrogate, which UTF-8 cannot hold), if one is not."""
    for i, value in enumerate(values):
        check_text(f"{name}[{i}]", value)


def check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = e.object[e.start : e.end]
        raise SeerError(
            f"{name} is not valid text: {bad!r} at position {e.start} "
            f"is a lone surrogate, which UTF-8 cannot hold"
        ) from None


def stop_on_error(errors: str) -> bool:
    if errors == "raise":
        return True
    if errors == "return":
        return False
    raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")


def matrix(buffer: bytearray, rows: int, dim: int) -> np.ndarray:
    """The native float32 rows as an (rows, dim) array, sharing their memory."""
    return np.frombuffer(buffer, dtype=np.float32).reshape(rows, dim)


def message(index: int, name: str, cause: str) -> str:
    return f"input {index} ({name}): {cause}"


def messages(failures: List[Optional[Tuple[str, str]]]) -> List[Optional[str]]:
    return [None if f is None else message(i, *f) for i, f in enumerate(failures)]


def raise_first(failures: List[Optional[Tuple[str, str]]]) -> None:
    for index, failure in enumerate(failures):
        if failure is not None:
            name, cause = failure
            error = SeerError(message(index, name, cause))
            error.index = index
            error.input = name
            error.cause = cause
            raise error
