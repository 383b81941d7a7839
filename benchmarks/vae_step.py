"""One VAE training step: genvi vs the same step hand-written in JAX vs NumPyro.

The model (issue 3): MLPs 784-400-2x50 (encoder) and 50-400-784 (decoder), batch 128,
Bernoulli likelihood, standard normal prior, Adam, single-sample reparameterized ELBO.

All three run in one process, interleaved round by round, and the script prints the
ratio of median step times (genvi / hand-written JAX, numpyro / hand-written JAX) and of
first-call (compile) times. Absolute times on a shared machine are noise; the ratios are
the figure.

    python benchmarks/vae_step.py [--rounds 15] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import genvi as gv
from genvi.core._handlers import address_key

D, H, Z, B = 784, 400, 50, 128


def init_params(key):
    def dense(k, m, n):
        return {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}

    ks = jax.random.split(key, 5)
    return {
        "enc": {"h": dense(ks[0], D, H), "mu": dense(ks[1], H, Z), "ls": dense(ks[2], H, Z)},
        "dec": {"h": dense(ks[3], Z, H), "out": dense(ks[4], H, D)},
    }


def encode(p, x):
    h = jax.nn.relu(x @ p["h"]["w"] + p["h"]["b"])
    return h @ p["mu"]["w"] + p["mu"]["b"], h @ p["ls"]["w"] + p["ls"]["b"]


def decode(p, z):
    h = jax.nn.relu(z @ p["h"]["w"] + p["h"]["b"])
    return h @ p["out"]["w"] + p["out"]["b"]


# ---------------------------------------------------------------- hand-written JAX
def hand_elbo(params, key, x):
    mu, log_sigma = encode(params["enc"], x)
    sigma = jnp.exp(log_sigma)
    # genvi derives the key of the choice at "z" by folding in its address; do the same so
    # both programs draw the same noise and the sanity check below compares like with like.
    eps = jax.random.normal(address_key(key, ("z",)), mu.shape)
    z = mu + sigma * eps
    logits = decode(params["dec"], z)
    log_lik = jnp.sum(x * logits - jax.nn.softplus(logits))
    log_prior = jnp.sum(-0.5 * z**2 - 0.5 * jnp.log(2 * jnp.pi))
    log_q = jnp.sum(-0.5 * eps**2 - log_sigma - 0.5 * jnp.log(2 * jnp.pi))
    return log_lik + log_prior - log_q


# ---------------------------------------------------------------- genvi
@gv.gen
def model(dec):
    z = gv.normal(jnp.zeros((B, Z)), 1.0) @ "z"
    gv.bernoulli(decode(dec, z)) @ "x"


@gv.gen
def guide(enc, x):
    mu, log_sigma = encode(enc, x)
    gv.normal(mu, jnp.exp(log_sigma)) @ "z"


@gv.expectation
def genvi_elbo(key, params, x):
    tr = guide.simulate(key, params["enc"], x)
    log_p, _ = model.assess(tr.choices.merge({"x": x}), params["dec"])
    return log_p - tr.score


def make_steps(opt):
    @jax.jit
    def hand_step(params, state, key, x):
        v, g = jax.value_and_grad(hand_elbo)(params, key, x)
        upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
        return optax.apply_updates(params, upd), state, v

    @jax.jit
    def genvi_step(params, state, key, x):
        v, g = genvi_elbo.value_and_grad_estimate(key, params, x)
        upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
        return optax.apply_updates(params, upd), state, v

    return {"hand": hand_step, "genvi": genvi_step}


def make_numpyro_step(opt_lr):
    try:
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, Trace_ELBO
    except ImportError:  # pragma: no cover
        return None

    params0 = init_params(jax.random.key(0))

    def nmodel(x):
        dec = numpyro.param("dec", params0["dec"])
        with numpyro.plate("batch", B):
            z = numpyro.sample("z", nd.Normal(jnp.zeros(Z), 1.0).to_event(1))
            numpyro.sample("x", nd.Bernoulli(logits=decode(dec, z)).to_event(1), obs=x)

    def nguide(x):
        enc = numpyro.param("enc", params0["enc"])
        mu, log_sigma = encode(enc, x)
        with numpyro.plate("batch", B):
            numpyro.sample("z", nd.Normal(mu, jnp.exp(log_sigma)).to_event(1))

    svi = SVI(nmodel, nguide, numpyro.optim.Adam(opt_lr), Trace_ELBO())
    return svi


def block(tree):
    jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)
    return tree


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--no-numpyro", action="store_true")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    key = jax.random.key(0)
    x = (jax.random.uniform(jax.random.key(1), (B, D)) < 0.3).astype(jnp.float32)
    opt = optax.adam(1e-3)
    steps = make_steps(opt)
    p0 = init_params(key)
    state = {name: (p0, opt.init(p0)) for name in steps}
    keys = jax.random.split(jax.random.key(2), args.steps)

    compile_s = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        block(fn(*state[name], keys[0], x))
        compile_s[name] = time.perf_counter() - t

    # Sanity: both compute the same objective and gradient on the same key and params.
    v_hand, g_hand = jax.jit(jax.value_and_grad(hand_elbo))(p0, keys[0], x)
    v_genvi, g_genvi = jax.jit(genvi_elbo.value_and_grad_estimate)(keys[0], p0, x)
    same = bool(np.allclose(v_hand, v_genvi, rtol=1e-4)) and all(
        np.allclose(a, b, rtol=1e-3, atol=1e-3)
        for a, b in zip(jax.tree.leaves(g_hand), jax.tree.leaves(g_genvi), strict=True)
    )

    runners = {}
    for name, fn in steps.items():

        def run_block(fn=fn, name=name):
            p, s = state[name]
            for k in keys:
                p, s, _ = fn(p, s, k, x)
            block(p)
            state[name] = (p, s)

        runners[name] = run_block

    svi = None if args.no_numpyro else make_numpyro_step(1e-3)
    if svi is not None:
        t = time.perf_counter()
        svi_state = svi.init(jax.random.key(3), x)
        upd = jax.jit(svi.update)
        block(upd(svi_state, x)[0])
        compile_s["numpyro"] = time.perf_counter() - t
        holder = {"s": svi_state}

        def run_numpyro():
            s = holder["s"]
            for _ in keys:
                s, _ = upd(s, x)
            block(s)
            holder["s"] = s

        runners["numpyro"] = run_numpyro

    times = {name: [] for name in runners}
    for r in range(args.rounds):
        order = list(runners)
        order = order[r % len(order) :] + order[: r % len(order)]
        for name in order:
            t = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - t) / args.steps)

    med = {n: statistics.median(ts) for n, ts in times.items()}
    out = {
        "device": str(jax.devices()[0]),
        "median_step_ms": {n: 1e3 * v for n, v in med.items()},
        "ratio_genvi_over_hand": med["genvi"] / med["hand"],
        "compile_s": compile_s,
        "compile_ratio_genvi_over_hand": compile_s["genvi"] / compile_s["hand"],
        "same_value_and_gradient": same,
    }
    if "numpyro" in med:
        out["ratio_numpyro_over_hand"] = med["numpyro"] / med["hand"]
        out["ratio_genvi_over_numpyro"] = med["genvi"] / med["numpyro"]
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
