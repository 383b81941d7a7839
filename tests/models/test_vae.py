"""The VAE of genvi.models.vae, against an exactly solvable configuration."""

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv
from genvi.models import vae

PIXELS, LATENT, HIDDEN = 6, 2, 4


def exact_params(bias):
    """A decoder that ignores z (zero weights, logits = bias) and a guide equal to the
    prior N(0, I): then p(x, z) / q(z) = p(x) for every z, and every bound equals
    log p(x) = sum_d log Bernoulli(x_d; sigmoid(bias_d)) with zero variance."""
    params = jax.tree.map(
        jnp.zeros_like,
        vae.init_params(jax.random.key(0), pixels=PIXELS, latent=LATENT, hidden=HIDDEN),
    )
    raw = jnp.log(jnp.expm1(1.0 - 1e-3))  # softplus(raw) + 1e-3 = 1
    params["encoder"][-1]["b"] = jnp.concatenate([jnp.zeros(LATENT), jnp.full(LATENT, raw)])
    params["decoder"][-1]["b"] = bias
    return params


def test_bounds_equal_the_exact_log_likelihood():
    bias = jnp.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    params = exact_params(bias)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, (21, PIXELS)), jnp.float32)
    exact = jnp.sum(x * jax.nn.log_sigmoid(bias) + (1 - x) * jax.nn.log_sigmoid(-bias), axis=1)
    bounds = {
        "elbo": gv.objectives.elbo(vae.model, vae.guide),
        "iwae": gv.objectives.iwae(vae.model, vae.guide, 7),
    }
    est = vae.per_image_estimates(bounds, jax.random.key(1), params, x, batch_size=8)
    for name in bounds:
        assert est[name].shape == (21,)
        np.testing.assert_allclose(est[name], exact, atol=1e-4)
    # the minibatch objective is the mean of the per-image bounds
    batch = jax.jit(vae.batch_objective(bounds["iwae"]))(jax.random.key(2), params, x)
    np.testing.assert_allclose(batch, exact.mean(), atol=1e-4)
    # 21 images in batches of 8: the 3 padding rows were dropped, each image kept its place
    params = vae.init_params(jax.random.key(3), pixels=PIXELS, latent=LATENT, hidden=HIDDEN)
    assert vae.reconstruct(params, x).shape == (21, PIXELS)
    s = vae.sample(jax.random.key(4), params, 5)
    assert s.shape == (5, PIXELS) and bool(jnp.all((s > 0) & (s < 1)))
