"""Keras models and TF modules of the method: generator, critic, WGAN-GP trainer, encoder, latent
inverter, convolutional autoencoder (one file per concept, each with its config), the noise-aware
default score, the score names, and the relevance model of re-ranking. TensorFlow is imported only
when a name that needs it is used."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "ModelConfig": "tfanomaly.models.config",
    "InversionConfig": "tfanomaly.models.config",
    "ScoreSettings": "tfanomaly.models.config",
    "get_preset": "tfanomaly.models.config",
    "build_generator": "tfanomaly.models.generator",
    "build_critic": "tfanomaly.models.critic",
    "build_encoder": "tfanomaly.models.encoder",
    "EncoderTrainer": "tfanomaly.models.encoder",
    "WGANGP": "tfanomaly.models.wgan_gp",
    "LatentInverter": "tfanomaly.models.inverter",
    "build_cae": "tfanomaly.models.cae",
    "cae_encoder": "tfanomaly.models.cae",
    "Calibration": "tfanomaly.models.noise_score",
    "NoiseAwareScore": "tfanomaly.models.noise_score",
    "SCORES": "tfanomaly.models.scores",
    "Score": "tfanomaly.models.scores",
    "RelevanceConfig": "tfanomaly.models.relevance",
    "LABELS": "tfanomaly.models.relevance",
    "relevance_scores": "tfanomaly.models.relevance",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
