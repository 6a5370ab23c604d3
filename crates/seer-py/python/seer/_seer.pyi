"""Types of the native module ``seer._seer`` (``src/*.rs``). Use ``seer.Model``."""

import os
from typing import Any, List, Optional, Sequence, Tuple, Union, final

__all__ = ["Index", "Model", "SeerError", "__version__"]
__version__: str

class SeerError(ValueError):
    """An error seer reports: a model that cannot be loaded, an input that
    cannot be embedded, or a bad argument.

    For an input that failed, ``index`` is its position in the inputs,
    ``input`` its name (the file's path, ``bytes``, ``array HxWx3``) and
    ``cause`` why it failed; for other errors they are absent.
    """

    index: int
    input: str
    cause: str

# An input as `seer._inputs.native_inputs` makes it.
_NativeInput = Union[
    Tuple[str, str],  # ("path", path)
    Tuple[str, bytes],  # ("bytes", encoded file)
    Tuple[str, Tuple[int, int, bytes]],  # ("rgb", (height, width, samples))
    Tuple[str, Tuple[str, str]],  # ("invalid", (name, cause))
]
# Each input's failure: (input name, cause), None where it worked.
_Failures = List[Optional[Tuple[str, str]]]
# (label, index, probability)
_Predicted = Tuple[str, int, float]
# (label, label index, score, (x0, y0, x1, y1))
_Detected = Tuple[str, int, float, Tuple[float, float, float, float]]
# (iou, stability score, box, crop box, point)
_AutoFacts = Tuple[
    float, float, Tuple[int, int, int, int], Tuple[int, int, int, int], Tuple[float, float]
]

@final
class Model:
    def __new__(
        cls,
        spec: Union[str, "os.PathLike[str]"],
        device: str = "cpu",
        precision: str = "f32",
        *,
        batch_size: int = 32,
        tokenizer: Union[str, "os.PathLike[str]", None] = None,
        offline: bool = False,
        max_pixels: Optional[int] = None,
    ) -> "Model": ...
    @property
    def dim(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def max_pixels(self) -> int: ...
    def __copy__(self) -> "Model": ...
    def __deepcopy__(self, memo: Any) -> "Model": ...
    @property
    def patch_grid(self) -> Optional[Tuple[int, int]]: ...
    def embed_images(
        self,
        inputs: Sequence[_NativeInput],
        normalize: bool,
        stop_on_error: bool,
        features: str = "cls",
    ) -> Tuple[bytearray, _Failures]: ...
    def embed_video(
        self,
        path: str,
        interval: float,
        max_frames: int,
        ffmpeg: Optional[str],
        normalize: bool,
        features: str,
    ) -> Tuple[List[float], bytearray]: ...
    def embed_texts(self, texts: Sequence[str], normalize: bool) -> bytearray: ...
    def classify(
        self,
        inputs: Sequence[_NativeInput],
        labels: Sequence[str],
        templates: Union[str, Sequence[str]],
        top_k: int,
        stop_on_error: bool,
    ) -> Tuple[List[Optional[List[_Predicted]]], _Failures]: ...
    def caption(
        self,
        inputs: Sequence[_NativeInput],
        prompt: Optional[str],
        beams: Optional[int],
        max_new_tokens: Optional[int],
        stop_on_error: bool,
    ) -> Tuple[List[Optional[str]], _Failures]: ...
    def ask(
        self,
        inputs: Sequence[_NativeInput],
        questions: Sequence[str],
        beams: Optional[int],
        max_new_tokens: Optional[int],
        stop_on_error: bool,
    ) -> Tuple[List[Optional[str]], _Failures]: ...
    def match_texts(
        self, inputs: Sequence[_NativeInput], texts: Sequence[str], stop_on_error: bool
    ) -> Tuple[bytearray, bytearray, _Failures]: ...
    def detect(
        self,
        inputs: Sequence[_NativeInput],
        labels: Optional[Sequence[str]],
        image_query: Optional[_NativeInput],
        threshold: Optional[float],
        nms: float,
        stop_on_error: bool,
    ) -> Tuple[List[Optional[List[_Detected]]], _Failures]: ...
    def segment(
        self,
        input: _NativeInput,
        points: Sequence[Tuple[float, float, bool]],
        boxes: Sequence[Tuple[float, float, float, float]],
        mask_logits: Optional[Sequence[float]],
        multimask: bool,
    ) -> Tuple[int, int, List[Tuple[Tuple[int, float], bytearray, bytearray]]]: ...
    def generate_masks(
        self,
        input: _NativeInput,
        points_per_side: int,
        pred_iou_thresh: float,
        stability_score_thresh: float,
        stability_score_offset: float,
        box_nms_thresh: float,
        crop_n_layers: int,
        crop_overlap_ratio: float,
        crop_n_points_downscale_factor: int,
    ) -> Tuple[int, int, List[Tuple[_AutoFacts, bytearray, bytearray]]]: ...

# (path, score, time, caption, bm25, fused, matched, (rerank scores, rerank error))
_Found = Tuple[
    str,
    Optional[float],
    Optional[float],
    Optional[str],
    Optional[float],
    Optional[float],
    List[str],
    Tuple[Optional[Tuple[float, float]], Optional[str]],
]

@final
class Index:
    def __new__(
        cls,
        dir: str,
        model: Optional[str],
        load: Tuple[str, str, Optional[str]],
        offline: bool,
        batch_size: int,
        max_pixels: Optional[int],
    ) -> "Index": ...
    @property
    def dir(self) -> str: ...
    def __len__(self) -> int: ...
    def models(self) -> List[Tuple[str, int, int]]: ...
    def search(
        self,
        texts: Sequence[str],
        images: Sequence[str],
        like: Sequence[str],
        subtract_texts: Sequence[str],
        subtract_images: Sequence[str],
        mode: str,
        k: int,
        min_score: Optional[float],
        path_glob: Optional[str],
        rerank: Optional[Model],
        rerank_depth: int,
        ffmpeg: Optional[str],
    ) -> List[_Found]: ...
    def vectors(self) -> Tuple[List[str], bytearray, int]: ...
    def duplicate_threshold(
        self, calibrate: bool, sample: int
    ) -> Tuple[Tuple[float, int, int, float, int, int, float], Optional[str]]: ...
    def duplicates(
        self,
        threshold: Optional[float],
        calibrate: bool,
        sample: int,
        neighbours: int,
        exact: bool,
    ) -> Tuple[List[Tuple[List[str], List[float]]], Optional[str]]: ...
