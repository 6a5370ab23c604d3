"""seer: embed images and texts, and zero-shot classify images, with seer's engine.

>>> import seer
>>> model = seer.Model("ViT-B-32")
>>> vectors = model.embed_images(["cat.jpg", open("dog.png", "rb").read()])
>>> model.classify(["cat.jpg"], ["cat", "dog"], top_k=1)
[[Prediction(label='cat', index=0, probability=0.98...)]]

See ``help(seer.Model)``. Threads: every call releases the GIL; seer's worker
threads start at the first embedding call of a process (not at import or when
a model loads), and a process forked after that starts its own.
"""

from ._inputs import ImageInput
from ._model import ErrorMode, Model, Prediction
from ._seer import SeerError, __version__

__all__ = ["ErrorMode", "ImageInput", "Model", "Prediction", "SeerError", "__version__"]
