"""The base of the networks built from a ModelConfig, after KerasHub's Backbone: a functional model
that keeps its config, serialises it and can be built from a preset name.
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig, resolve_preset


class PresetModel(keras.Model):
    """A functional ``keras.Model`` built from a ModelConfig, kept as ``model_config``.

    A subclass builds its layers and graph in ``__init__`` and passes ``inputs`` and ``outputs``
    here (KerasHub's "functional subclass"); calling it is calling that functional graph.
    ``get_config`` starts from ``super().get_config()`` (name, trainable, dtype) and adds
    ``model_config`` as a dict, so a model round-trips through ``get_config``/``from_config`` and
    ``.keras`` files as its own class. Subclasses with more constructor arguments add them to
    ``get_config``.

    Layers are not kept as attributes: the model's layers, the order of its weights (which the
    generator's moving average and ``set_weights`` rely on) and the layout of its saved files stay
    those of the plain functional model that earlier versions built.

    Args:
        inputs: the functional graph's input.
        outputs: its output(s).
        model_config: the architecture.
        dtype: dtype policy of the layers; None takes the global policy at construction. It is
            saved, so a network built under ``mixed_bfloat16`` reloads as one under any policy.
        **kwargs: ``name``, ``trainable``.

    Example:
        >>> from tfanomaly.models import Critic
        >>> critic = Critic.from_preset("cpu32")
        >>> Critic.from_config(critic.get_config()).model_config == critic.model_config
        True
    """

    def __init__(self, *, inputs, outputs, model_config: ModelConfig, dtype=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.model_config = model_config
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

    @classmethod
    def from_preset(cls, preset: str | ModelConfig, channels: int | None = None, **kwargs):
        """A new (untrained) model for a preset: a name (of ``PRESETS``, or a family with a size
        such as ``cpu64``) or a ModelConfig, for ``channels`` bands if given; ``kwargs`` go to
        the constructor."""
        return cls(resolve_preset(preset, channels), **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": self.model_config.to_dict()})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model_config"] = ModelConfig.from_dict(config["model_config"])
        return cls(**config)
