"""What genvi's per-address keys cost the compiler: IWAE with K particles on the VAE of
``vae_step.py``, genvi vs the same objective hand-written in JAX.

Three programs compute value and gradient of the importance-weighted bound
``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` (encoder and decoder parameters), K = 64 by
default (``--particles``):

- ``genvi``: ``gv.objectives.iwae(model, guide, particles=K).value_and_grad_estimate``;
- ``hand_one_key``: hand-written JAX drawing all ``K x B x Z`` noise from one key (the
  cheapest program: one PRNG call);
- ``hand_genvi_keys``: the same hand-written objective drawing each particle's noise with
  the keys genvi derives (``gv.objectives.particle_keys``, then the key of address
  ``"z"``: elementwise arithmetic, see ``genvi/core/_derive.py``), so its
  value and gradient must equal genvi's on the same key (checked before timing).

Compile times (``jit(...).lower(...).compile()``, a fresh function each round so nothing
is cached) are taken round-robin over ``--rounds`` rounds; the script prints the median of
each and the ratios to ``hand_one_key``. The compiled programs' sizes (HLO lines, PRNG
loops) are printed too. Absolute times on a shared machine are noise; the ratios are the
figure.

    python benchmarks/iwae_compile.py [--rounds 7] [--particles 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

import genvi as gv
from genvi.core._handlers import address_key

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_step import B, D, Z, decode, encode, init_params  # noqa: E402


def _bound(params, x, eps):
    mu, log_sigma = encode(params["enc"], x)
    z = mu + jnp.exp(log_sigma) * eps  # (K, B, Z)
    logits = decode(params["dec"], z)
    log_lik = jnp.sum(x * logits - jax.nn.softplus(logits), axis=(-1, -2))
    log_prior = jnp.sum(-0.5 * z**2 - 0.5 * jnp.log(2 * jnp.pi), axis=(-1, -2))
    log_q = jnp.sum(-0.5 * eps**2 - log_sigma - 0.5 * jnp.log(2 * jnp.pi), axis=(-1, -2))
    lw = log_lik + log_prior - log_q
    return logsumexp(lw) - jnp.log(lw.shape[0])


def make_programs(particles: int):
    @gv.gen
    def model(dec):
        z = gv.normal(jnp.zeros((B, Z)), 1.0) @ "z"
        gv.bernoulli(decode(dec, z)) @ "x"

    @gv.gen
    def guide(enc, x):
        mu, log_sigma = encode(enc, x)
        gv.normal(mu, jnp.exp(log_sigma)) @ "z"

    objective = gv.objectives.iwae(model, guide, particles=particles)

    def genvi(params, key, x):
        v, (g_dec, g_enc) = objective.value_and_grad_estimate(
            key, (params["dec"],), (params["enc"], x), {"x": x}, argnums=(0, 1)
        )
        return v, {"dec": g_dec[0], "enc": g_enc[0]}

    def hand_one_key(params, key, x):
        eps = jax.random.normal(key, (particles, B, Z))
        return jax.value_and_grad(_bound)(params, x, eps)

    def hand_genvi_keys(params, key, x):
        keys = gv.objectives.particle_keys(key, particles)
        eps = jax.vmap(lambda k: jax.random.normal(address_key(k, ("z",)), (B, Z)))(keys)
        return jax.value_and_grad(_bound)(params, x, eps)

    return {"genvi": genvi, "hand_one_key": hand_one_key, "hand_genvi_keys": hand_genvi_keys}


def compile_seconds(fn, *args) -> float:
    lowered = jax.jit(lambda *a: fn(*a)).lower(*args)  # a new function: no cache hit
    t = time.perf_counter()
    lowered.compile()
    return time.perf_counter() - t


def check_same(programs, params, key, x) -> None:
    """genvi and the hand-written program with genvi's keys draw the same noise: their
    values and gradients must agree."""
    v_g, g_g = jax.jit(programs["genvi"])(params, key, x)
    v_h, g_h = jax.jit(programs["hand_genvi_keys"])(params, key, x)
    if not np.allclose(v_g, v_h, rtol=1e-4):
        raise AssertionError(
            f"genvi's IWAE value {float(v_g)} differs from the hand-written {float(v_h)}"
        )
    for a, b in zip(jax.tree.leaves(g_g), jax.tree.leaves(g_h), strict=True):
        if not np.allclose(a, b, rtol=1e-3, atol=1e-4):
            raise AssertionError("genvi's IWAE gradient differs from the hand-written one")


def main(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--particles", type=int, default=64)
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    params = init_params(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (B, D)) < 0.3).astype(jnp.float32)
    key = jax.random.key(2)
    programs = make_programs(args.particles)
    check_same(programs, params, key, x)

    sizes = {}
    for name, fn in programs.items():
        text = jax.jit(fn).lower(params, key, x).compile().as_text() or ""
        sizes[name] = {"hlo_lines": len(text.splitlines()), "loops": text.count(" while(")}

    times: dict[str, list[float]] = {name: [] for name in programs}
    for r in range(args.rounds):
        names = list(programs)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(compile_seconds(programs[name], params, key, x))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {name: median[name] / median["hand_one_key"] for name in programs}
    result = {
        "device": str(jax.devices()[0]),
        "particles": args.particles,
        "batch": B,
        "rounds": args.rounds,
        "same_value_and_gradient": True,
        "median_compile_s": median,
        "compile_ratio_over_hand_one_key": ratios,
        "compiled_size": sizes,
    }
    print("| program | compile (s) | / hand, one key | HLO lines | PRNG loops |")
    print("|---|---|---|---|---|")
    for name in programs:
        s = sizes[name]
        print(
            f"| {name} | {median[name]:.3f} | {ratios[name]:.2f} | {s['hlo_lines']} | {s['loops']} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
