"""seer: embed images and texts, zero-shot classify, caption, ask, match, detect and
segment images, and search an index ``seer index`` made, with seer's engine.

>>> import seer
>>> model = seer.Model("ViT-B-32")
>>> vectors = model.embed_images(["cat.jpg", open("dog.png", "rb").read()])
>>> model.classify(["cat.jpg"], ["cat", "dog"], top_k=1)
[[Prediction(label='cat', index=0, probability=0.98...)]]

See ``help(seer.Model)``. Threads: every call releases the GIL; seer's worker
threads start at the first embedding call of a process (not at import or when
a model loads), and a process forked after that starts its own.
"""

import os

# candle (the tensor library under seer) runs its CPU ops on a global pool of
# threads of its own, started at its first large op. Those threads do not
# survive fork(): a forked child's first large op then waits for them forever
# (busy-spinning), and a child forked while a parent thread holds the pool's
# call lock blocks on it. seer's heavy work runs on rayon pools that are
# fork-safe (see the extension's docs); with one thread candle's pool runs its
# ops inline and starts no thread. Read by candle once, at its first parallel
# op, so it must be set before any model runs; a value set by the user wins.
os.environ.setdefault("CANDLE_NUM_THREADS", "1")

from ._index import DuplicateGroup, DuplicateThreshold, Hit, Index, IndexModel  # noqa: E402
from ._inputs import ImageInput  # noqa: E402
from ._model import ErrorMode, Model, Prediction  # noqa: E402
from ._tasks import Detection, GeneratedMask, Mask, Matches  # noqa: E402
from ._seer import SeerError, __version__  # noqa: E402

__all__ = [
    "Detection",
    "DuplicateGroup",
    "DuplicateThreshold",
    "ErrorMode",
    "GeneratedMask",
    "Hit",
    "ImageInput",
    "Index",
    "IndexModel",
    "Mask",
    "Matches",
    "Model",
    "Prediction",
    "SeerError",
    "__version__",
]
