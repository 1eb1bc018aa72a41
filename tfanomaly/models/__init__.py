"""Keras models and TF modules of the method: generator, critic, WGAN-GP trainer, encoder, latent
inverter, convolutional autoencoder (one file per concept, each with its config)."""
