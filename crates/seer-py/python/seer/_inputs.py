"""Images as users pass them, turned into what the native module takes.

Each input becomes a ``(kind, payload)`` pair (see ``src/input.rs``):
``("path", str)``, ``("bytes", bytes)``, ``("rgb", (height, width, bytes))``,
or ``("invalid", (name, cause))`` for an input refused here (wrong type,
dtype or shape). Refused inputs are passed on rather than dropped so that each
input keeps its place in the model's batches and its row in the result.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, List, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: One image: a file path, an encoded file's bytes, an HxWx3 uint8 RGB array,
#: or a PIL image.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, "PILImage"]

NativeInput = Tuple[str, Any]

# The largest side the native module takes (a u32 there).
_MAX_SIDE = 2**32 - 1


def native_inputs(
    inputs: Iterable[ImageInput], max_pixels: int, what: str = "images"
) -> List[NativeInput]:
    """Every input as the native module takes it, in order; an array over
    ``max_pixels`` is refused before it is copied (a broadcast view of a
    trillion pixels holds no memory until ``tobytes`` makes it)."""
    if isinstance(inputs, (str, bytes, bytearray, memoryview, os.PathLike)) or _is_pil(inputs):
        raise TypeError(f"{what}: pass a list of images (wrap a single image in a list)")
    if isinstance(inputs, np.ndarray) and not _is_image_list(inputs):
        one = " (one image: wrap it in a list)" if inputs.ndim == 3 else ""
        raise TypeError(
            f"{what}: pass a list of images, an N x H x W x 3 uint8 array, or a 1-D array "
            f"of paths (str or object dtype); got an array of shape {inputs.shape} "
            f"and dtype {inputs.dtype}{one}"
        )
    return [_native(x, max_pixels) for x in inputs]


def _is_image_list(a: np.ndarray) -> bool:
    """An array that holds one image per item: N x H x W x 3 (each item an
    HxWx3 array), or a 1-D array of paths (``str`` dtype) or of any inputs
    (``object`` dtype), taken as a list would be. A 1-D ``bytes`` (``S``) array
    is not: it drops the trailing NUL bytes of each item, which an encoded
    file may end with."""
    return a.ndim == 4 or (a.ndim == 1 and a.dtype.kind in "UO")


def _native(x: Any, max_pixels: int) -> NativeInput:
    if isinstance(x, str):
        return _path(str(x))  # numpy's str_ items too
    if isinstance(x, os.PathLike):
        path = os.fspath(x)
        return _path(path if isinstance(path, str) else os.fsdecode(path))
    if isinstance(x, bytes):
        return ("bytes", x)
    if isinstance(x, (bytearray, memoryview)):
        return ("bytes", bytes(x))
    if _is_pil(x):
        width, height = x.size
        if width * height > max_pixels:
            # Refused before converting: a lazily opened file of that size
            # would be decoded in full first.
            return _invalid(
                f"PIL image {width}x{height}",
                f"{width * height} pixels, over the budget of {max_pixels} pixels",
            )
        try:
            rgb = np.asarray(x.convert("RGB"))
        except Exception as e:  # PIL decodes lazily: a broken file fails here
            return _invalid("PIL image", f"cannot convert to RGB: {e}")
        return _array(rgb, max_pixels)
    if isinstance(x, np.ndarray):
        return _array(x, max_pixels)
    kind = type(x).__name__
    return _invalid(
        kind,
        f"unsupported input type {kind}: expected a path (str or os.PathLike), bytes, "
        "an HxWx3 uint8 numpy array or a PIL image",
    )


def _path(path: str) -> NativeInput:
    """A path, or this input's error where no file can have it as its name (a
    lone surrogate that ``os.fsdecode`` never makes): the native module would
    refuse it for the whole call."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError as e:
        name = path.encode("utf-8", "backslashreplace").decode("utf-8")
        bad = e.object[e.start : e.end]
        return _invalid(name, f"the path cannot be a file's name ({e.reason}: {bad!r})")
    return ("path", path)


def _array(a: np.ndarray, max_pixels: int) -> NativeInput:
    name = "array " + "x".join(str(n) for n in a.shape)
    if a.dtype != np.uint8:
        return _invalid(name, f"expected dtype uint8, got {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 3:
        return _invalid(name, f"expected an HxWx3 array (RGB), got shape {a.shape}")
    height, width = int(a.shape[0]), int(a.shape[1])
    if height == 0 or width == 0:
        return _invalid(name, "the array holds no pixels")
    if height > _MAX_SIDE or width > _MAX_SIDE:
        return _invalid(name, "the array is too large")
    if height * width > max_pixels:
        # The native module's words for the same check, made before the copy.
        return _invalid(name, f"{height * width} pixels, over the budget of {max_pixels} pixels")
    return ("rgb", (height, width, np.ascontiguousarray(a).tobytes()))


def _invalid(name: str, cause: str) -> NativeInput:
    return ("invalid", (name, cause))


def _is_pil(x: Any) -> bool:
    """A PIL image, told without importing PIL (it is optional)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)
