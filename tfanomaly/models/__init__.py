"""The method's models and scores, in Keras and TF ops. TensorFlow is imported only when a name
that needs it is used.

- Architecture: ``config`` (presets and families of ModelConfig, DiffAugment names),
  ``preset_model``, ``generator``, ``critic``, ``wgan_gp`` (the WGAN-GP trainer), ``augment``,
  ``encoder``, ``inverter`` (the latent inversion, which also computes the scores), ``cae`` (the
  convolutional autoencoder of the characterisation), ``residual_shape`` (descriptors of the
  residual image).
- ``scores``: the scores' names, as the inverter, the results file and the catalog give them.
- The default score: ``score_config`` (ScoreSettings, InversionConfig, the term weights),
  ``calibration`` (the calibration record and its file), ``score_fit`` (fitting it),
  ``noise_score`` (the score in the graph), ``term_health`` (which terms carry information on a
  data set; a candidate per-data-set weighting), and the pieces it reads: ``filters``,
  ``pixel_noise``, ``morphology``.
- ``relevance``: the relevance learned from an astronomer's labels, combined with the score.
"""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "ModelConfig": "tfanomaly.models.config",
    "InversionConfig": "tfanomaly.models.score_config",
    "ScoreSettings": "tfanomaly.models.score_config",
    "get_preset": "tfanomaly.models.config",
    "Generator": "tfanomaly.models.generator",
    "Critic": "tfanomaly.models.critic",
    "Encoder": "tfanomaly.models.encoder",
    "EncoderTrainer": "tfanomaly.models.encoder",
    "WGANGP": "tfanomaly.models.wgan_gp",
    "LatentInverter": "tfanomaly.models.inverter",
    "CAE": "tfanomaly.models.cae",
    "cae_encoder": "tfanomaly.models.cae",
    "residual_shape": "tfanomaly.models.residual_shape",
    "Calibration": "tfanomaly.models.calibration",
    "NoiseAwareScore": "tfanomaly.models.noise_score",
    "TermHealth": "tfanomaly.models.term_health",
    "check_term": "tfanomaly.models.term_health",
    "tail_weights": "tfanomaly.models.term_health",
    "SCORES": "tfanomaly.models.scores",
    "Score": "tfanomaly.models.scores",
    "RelevanceConfig": "tfanomaly.models.relevance",
    "LABELS": "tfanomaly.models.relevance",
    "relevance_scores": "tfanomaly.models.relevance",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
