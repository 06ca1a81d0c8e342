"""Training FantasyID (``fantasyid train``): config, dataset, step, loop, checkpoints, export.

* :mod:`~fantasyid.training.config`: the YAML config (dataclasses, ``--set`` overrides, nearest-key errors)
* :mod:`~fantasyid.training.model`: components from ``model.init``, ablations, freezing, LoRA
* :mod:`~fantasyid.training.step`: CogVideoX's I2V objective with identity tokens
* :mod:`~fantasyid.training.loop`: the accelerate loop (:func:`train`)
* :mod:`~fantasyid.training.checkpoints`, :mod:`~fantasyid.training.export`
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "TrainConfig": "config",
    "load_config": "config",
    "train": "loop",
    "TrainResult": "loop",
    "TrainingError": "loop",
}

__all__ = tuple(sorted(_LAZY))
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
