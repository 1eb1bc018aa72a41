"""The method's models and scores, in Keras and TF ops.

- Architecture: ``config`` (presets and families of ModelConfig, DiffAugment names),
  ``preset_model``, ``generator``, ``critic``, ``wgan_gp`` (the WGAN-GP trainer), ``augment``,
  ``encoder``, ``inverter`` (the latent inversion, which also computes the scores), ``cae`` (the
  convolutional autoencoder of the characterisation).
- ``scores``: the scores' names, as the inverter, the results file and the catalog give them.
- The default score: ``score_config`` (ScoreSettings, InversionConfig, the term weights),
  ``calibration`` (the calibration record and its file), ``score_fit`` (fitting it),
  ``noise_score`` (the score in the graph), and the pieces it reads: ``filters``, ``pixel_noise``,
  ``morphology``.
- ``relevance``: the relevance learned from an astronomer's labels, combined with the score.
"""
