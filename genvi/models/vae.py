"""A variational autoencoder for binary images (Kingma and Welling, 2014), written as a
genvi model and guide with encoder and decoder multilayer perceptrons in plain JAX.

For one image ``x`` with ``D`` pixels and a latent code ``z`` of size ``L``::

    model (decoder parameters theta):   z ~ N(0, I_L),   x_d ~ Bernoulli(sigmoid(f_theta(z)_d))
    guide (encoder parameters phi):     z ~ N(mu_phi(x), diag(sigma_phi(x)^2))

``f_theta``, ``mu_phi`` and ``sigma_phi`` are MLPs with one tanh hidden layer
(``sigma = softplus(.) + 1e-3``). Every library objective applies per image, through
:func:`batch_objective`, which averages it over a minibatch: for the IWAE and the other
multi-particle bounds the particles belong to each image (a bound on each ``log p(x)``),
which is tighter than particles of the whole minibatch at once. ``notebooks/03_vae_digits.ipynb``
and the ``genvi vae`` command train it on the digits data set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import genvi as gv


def init_mlp(key, sizes: list[int]) -> list[dict]:
    """Layers ``{"w": [n_in, n_out], "b": [n_out]}`` with ``w ~ N(0, 1 / n_in)``, ``b = 0``.

    Examples:
        >>> from genvi.models import vae
        >>> layers = vae.init_mlp(jax.random.key(0), [3, 5, 2])
        >>> [layer["w"].shape for layer in layers]
        [(3, 5), (5, 2)]
    """
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(layers: list[dict], x):
    """``tanh`` hidden layers, a linear output layer.

    Examples:
        >>> from genvi.models import vae
        >>> layers = vae.init_mlp(jax.random.key(0), [3, 5, 2])
        >>> vae.mlp(layers, jnp.ones(3)).shape
        (2,)
    """
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def init_params(key, *, pixels: int, latent: int, hidden: int) -> dict:
    """``{"encoder": [pixels -> hidden -> 2 latent], "decoder": [latent -> hidden -> pixels]}``.

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> [layer["w"].shape for layer in params["encoder"]]
        [(64, 16), (16, 8)]
    """
    k_enc, k_dec = jax.random.split(key)
    return {
        "encoder": init_mlp(k_enc, [pixels, hidden, 2 * latent]),
        "decoder": init_mlp(k_dec, [latent, hidden, pixels]),
    }


@gv.gen
def model(decoder):
    """``z ~ N(0, I)`` at ``"z"``, then every pixel ``x_d ~ Bernoulli(logits = f(z)_d)`` at
    ``"x"`` (one array-valued choice); returns the logits.

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> tr = vae.model.simulate(jax.random.key(1), params["decoder"])
        >>> tr.choices["z"].shape, tr.choices["x"].shape
        ((4,), (64,))
    """
    latent = decoder[0]["w"].shape[0]
    z = gv.normal(jnp.zeros(latent), 1.0) @ "z"
    logits = mlp(decoder, z)
    gv.bernoulli(logits) @ "x"
    return logits


@gv.gen
def guide(encoder, x):
    """``z ~ N(mu(x), diag(sigma(x)^2))`` at ``"z"`` (reparameterized).

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> tr = vae.guide.simulate(jax.random.key(1), params["encoder"], x[0])
        >>> tr.choices["z"].shape
        (4,)
    """
    out = mlp(encoder, x)
    mean, raw = jnp.split(out, 2)
    gv.normal(mean, jax.nn.softplus(raw) + 1e-3) @ "z"


def per_image(objective, key, params, x):
    """One image's estimate of a library objective (the genvi calling convention).

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> elbo = gv.objectives.elbo(vae.model, vae.guide)
        >>> vae.per_image(elbo, jax.random.key(1), params, x[0]).shape
        ()
    """
    return objective(key, (params["decoder"],), (params["encoder"], x), {"x": x})


def batch_objective(objective):
    """``(key, params, batch) -> mean over the images of the batch of objective``, the
    form :func:`genvi.fit` takes; each image gets its own key (independent particles).

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> objective = vae.batch_objective(gv.objectives.elbo(vae.model, vae.guide))
        >>> jax.jit(objective)(jax.random.key(1), params, x).shape   # mean ELBO of the 5 images
        ()
        >>> # gv.fit(objective, params, key=key, steps=5000, data=train, batch_size=100)
    """

    def minibatch_objective(key, params, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jnp.mean(jax.vmap(lambda k, x: per_image(objective, k, params, x))(keys, batch))

    return minibatch_objective


def per_image_estimates(objectives: dict, key, params, x, batch_size: int = 16) -> dict:
    """Each objective's estimate for every image of ``x``: ``{name: [n]}``, in one
    compiled pass over the images, ``batch_size`` at a time (this bounds memory with
    many particles). Image ``i`` uses the same key for every objective.

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> bounds = {"iwae": gv.objectives.iwae(vae.model, vae.guide, particles=10)}
        >>> est = vae.per_image_estimates(bounds, jax.random.key(1), params, x, batch_size=5)
        >>> est["iwae"].shape
        (5,)
    """

    def one(params, k, xi):
        return {name: per_image(obj, k, params, xi) for name, obj in objectives.items()}

    @jax.jit
    def run(params, keys, x):
        return jax.lax.map(lambda kx: one(params, *kx), (keys, x), batch_size=batch_size)

    n = x.shape[0]
    pad = -n % batch_size  # whole batches only: one compiled loop body, no remainder
    x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
    out = run(params, jax.random.split(key, n + pad), x)
    return {name: v[:n] for name, v in out.items()}


def reconstruct(params, x):
    """Pixel probabilities decoded from the guide's mean code of each image of ``x``.

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> vae.reconstruct(params, x).shape                   # pixel probabilities
        (5, 64)
    """
    out = mlp(params["encoder"], x)
    mean = jnp.split(out, 2, axis=-1)[0]
    return jax.nn.sigmoid(mlp(params["decoder"], mean))


def sample(key, params, n: int):
    """Pixel probabilities of ``n`` images decoded from codes ``z ~ N(0, I)``.

    Examples:
        >>> from genvi.models import vae
        >>> params = vae.init_params(jax.random.key(0), pixels=64, latent=4, hidden=16)
        >>> x = jnp.zeros((5, 64)).at[:, ::2].set(1.0)         # 5 binary images
        >>> vae.sample(jax.random.key(1), params, 3).shape
        (3, 64)
    """
    latent = params["decoder"][0]["w"].shape[0]
    z = jax.random.normal(key, (n, latent))
    return jax.nn.sigmoid(mlp(params["decoder"], z))
