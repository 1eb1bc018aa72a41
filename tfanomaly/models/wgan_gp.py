"""WGAN-GP (Gulrajani et al. 2017) as a ``keras.Model`` with a custom ``train_step``: n_critic critic
updates, each on its own real batch, then one generator update.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfanomaly.models.augment import diff_augment
from tfanomaly.models.config import ModelConfig, parse_augment, resolve_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.generator import Generator

GP_EPSILON = 1e-12  # inside the gradient norm's square root: finite gradients at a zero norm


@keras.saving.register_keras_serializable(package="tfanomaly")
class WGANGP(keras.Model):
    """Generator + critic trained with the Wasserstein loss and a gradient penalty.

    ``fit`` expects batches of ``n_critic * batch_size`` stretched images: the batch is cut into
    ``n_critic`` real batches, one per critic update, so every critic step sees fresh data.

    Args:
        generator: G, z -> image.
        critic: D, image -> (score, features).
        latent_dim: size of z.
        n_critic: critic updates per generator update (paper: 5).
        gp_weight: weight of the gradient penalty (paper: 10).
        seed: seed of the SeedGenerator that draws z and the interpolation weights.
        ema_decay: 0 (off) or the decay of an exponential moving average of the generator's
            weights, updated after every generator step (warm-up: the decay used at step t is
            min(ema_decay, (1 + t) / (10 + t))). ``ema_weights`` holds the average;
            ``averaged_generator()`` returns a generator carrying it.
        augment: transforms applied to every image the critic sees during training, real and
            generated alike (DiffAugment; ``models.augment``): ``()`` (off, the paper), ``flip``,
            ``translation``.
        contrastive: 0 (off, the paper) or the weight of a contrastive term in the critic's loss
            (SimCLR's InfoNCE, as in ContraD, Jeong & Shin 2021): the critic's features of two
            random flips and shifts of each real image, through a small projection head, must
            pick each other out of the batch. Meant to make f(x) describe what an image is rather
            than only how real it looks.
        temperature: the InfoNCE temperature.

    Example:
        >>> gan = WGANGP.from_preset("cpu32", seed=0)  # doctest: +SKIP
        >>> gan.compile(d_optimizer=adam(), g_optimizer=adam())  # doctest: +SKIP
        >>> gan.fit(image_dataset(..., batch_size=5 * 32, repeat=True), steps_per_epoch=100)  # doctest: +SKIP
    """

    def __init__(
        self,
        generator: keras.Model,
        critic: keras.Model,
        latent_dim: int,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        seed: int | None = None,
        ema_decay: float = 0.0,
        augment=(),
        contrastive: float = 0.0,
        temperature: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Layers and state.
        self.generator = generator
        self.critic = critic
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.wasserstein_tracker = keras.metrics.Mean(name="wasserstein")
        self.gp_tracker = keras.metrics.Mean(name="gp")
        # Plain variables, not a second Keras model: the same update runs on every replica (the
        # weights it averages are already synchronised), so only the first replica's value counts.
        self.ema_weights = [
            tf.Variable(
                tf.identity(w),
                trainable=False,
                name=f"ema_{i}",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for i, w in enumerate(generator.weights if ema_decay > 0 else [])
        ]
        # Config.
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.seed = seed
        self.ema_decay = ema_decay
        self.augment = parse_augment(augment)
        self.contrastive = contrastive
        self.temperature = temperature
        self.projection = None
        if contrastive > 0:
            width = critic.outputs[1].shape[-1]
            self.projection = keras.Sequential(
                [
                    keras.Input((width,)),
                    keras.layers.Dense(128, activation="relu"),
                    keras.layers.Dense(64),
                ],
                name="projection",
            )
        # G and D are built functional models: nothing is left for Keras to infer from data.
        self.built = True

    @classmethod
    def from_preset(
        cls, preset: str | ModelConfig, channels: int | None = None, **kwargs
    ) -> WGANGP:
        """A new WGAN-GP with an untrained ``Generator`` and ``Critic`` for a preset: a name of
        ``PRESETS``, a family with a size (``cpu64``) or a ModelConfig (as the networks'
        ``from_preset``), for ``channels`` bands if given; ``kwargs`` (``n_critic``, ``seed``...)
        go to the constructor."""
        config = resolve_preset(preset, channels)
        return cls(Generator(config), Critic(config), config.latent_dim, **kwargs)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.wasserstein_tracker, self.gp_tracker]

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Create the slot variables now (inside any strategy scope), not lazily inside the
        # distributed train function, where MirroredStrategy cannot initialise them.
        d_optimizer.build(self.critic_variables)
        g_optimizer.build(self.generator.trainable_variables)

    def get_compile_config(self):
        if not self.compiled:  # saved before compile(): nothing to restore (Keras' own default)
            return {}
        return {
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
        }

    def compile_from_config(self, config):
        self.compile(
            d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
            g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
        )

    @property
    def generator_steps(self):
        """Generator updates made so far (checkpointed with the optimizer)."""
        return self.g_optimizer.iterations

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def sample_z(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    @property
    def critic_variables(self) -> list:
        """What the critic's optimizer trains: the critic, and the projection head when the
        contrastive term is on."""
        head = self.projection.trainable_variables if self.projection is not None else []
        return self.critic.trainable_variables + head

    def contrastive_loss(self, real):
        """Symmetric InfoNCE between two random views (flip, shift) of each real image."""
        views = [diff_augment(real, ("flip", "translation"), self.seed_generator) for _ in "ab"]
        heads = [
            tf.math.l2_normalize(self.projection(self.critic(v, training=True)[1]), axis=1)
            for v in views
        ]
        logits = tf.matmul(heads[0], heads[1], transpose_b=True) / self.temperature
        labels = tf.range(tf.shape(real)[0])
        loss = keras.losses.sparse_categorical_crossentropy
        return 0.5 * tf.reduce_mean(
            loss(labels, logits, from_logits=True)
            + loss(labels, tf.transpose(logits), from_logits=True)
        )

    def critic_score(self, images):
        """D's training-time score of ``images``, through the augmentation when it is on."""
        if self.augment:
            images = diff_augment(images, self.augment, self.seed_generator)
        return self.critic(images, training=True)[0]

    def gradient_penalty(self, real, fake):
        """Mean of (||grad_x D(x)|| - 1)^2 at random points between real and fake images."""
        batch_size = tf.shape(real)[0]
        alpha = keras.random.uniform((batch_size, 1, 1, 1), seed=self.seed_generator)
        mixed = fake + alpha * (real - fake)
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            score = self.critic_score(mixed)
        grads = tape.gradient(score, mixed)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) + GP_EPSILON)
        return tf.reduce_mean(tf.square(norm - 1.0))

    def train_step(self, data):
        real_batches = tf.split(data, self.n_critic, axis=0)
        # Losses are per replica; the optimizers sum gradients over replicas, so scale by 1/n.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        d_losses, distances, penalties = [], [], []
        for real in real_batches:
            batch_size = tf.shape(real)[0]
            fake = self.generator(self.sample_z(batch_size), training=True)
            with tf.GradientTape() as tape:
                real_score = self.critic_score(real)
                fake_score = self.critic_score(fake)
                distance = tf.reduce_mean(real_score) - tf.reduce_mean(fake_score)
                penalty = self.gradient_penalty(real, fake)
                d_loss = -distance + self.gp_weight * penalty
                if self.projection is not None:
                    d_loss += self.contrastive * self.contrastive_loss(real)
                scaled = self.d_optimizer.scale_loss(d_loss / replicas)
            variables = self.critic_variables
            grads = tape.gradient(scaled, variables)
            self.d_optimizer.apply_gradients(zip(grads, variables, strict=True))
            d_losses.append(d_loss)
            distances.append(distance)
            penalties.append(penalty)

        batch_size = tf.shape(real_batches[0])[0]
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_z(batch_size), training=True)
            fake_score = self.critic_score(fake)
            g_loss = -tf.reduce_mean(fake_score)
            scaled = self.g_optimizer.scale_loss(g_loss / replicas)
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(
            zip(grads, self.generator.trainable_variables, strict=True)
        )
        if self.ema_weights:
            self.update_ema()

        self.d_loss_tracker.update_state(tf.add_n(d_losses) / self.n_critic)
        self.g_loss_tracker.update_state(g_loss)
        self.wasserstein_tracker.update_state(tf.add_n(distances) / self.n_critic)
        self.gp_tracker.update_state(tf.add_n(penalties) / self.n_critic)
        return {m.name: m.result() for m in self.metrics}

    def update_ema(self) -> None:
        """One step of the moving average of the generator's weights (after a generator step)."""
        t = tf.cast(self.g_optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.ema_weights, self.generator.weights, strict=True):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight, average.dtype))

    def averaged_generator(self) -> keras.Model:
        """A copy of the generator with the moving-average weights (the generator itself when the
        average is off)."""
        if not self.ema_weights:
            return self.generator
        # Rebuilt from its serialised config, not keras.models.clone_model, which turns any
        # functional subclass into a plain functional model: the copy stays a Generator.
        copy = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(self.generator)
        )
        copy.set_weights([w.numpy() for w in self.ema_weights])
        return copy

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "generator": keras.saving.serialize_keras_object(self.generator),
                "critic": keras.saving.serialize_keras_object(self.critic),
                "latent_dim": self.latent_dim,
                "n_critic": self.n_critic,
                "gp_weight": self.gp_weight,
                "seed": self.seed,
                "ema_decay": self.ema_decay,
                "augment": list(self.augment),
                "contrastive": self.contrastive,
                "temperature": self.temperature,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["critic"] = keras.saving.deserialize_keras_object(config["critic"])
        return cls(**config)


def paper_optimizer(learning_rate: float = 1e-4) -> keras.optimizers.Adam:
    """Adam with the paper's settings for both networks: lr 1e-4, beta1 0.5, beta2 0.9."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.5, beta_2=0.9)
