"""Sigmoid belief networks on binarized digits: every discrete gradient estimator of genvi
against NumPyro's ``TraceGraph_ELBO``, held-out bound and gradient variance against time.

The benchmark of the discrete-estimator literature (NVIL, Mnih and Gregor 2014; VIMCO,
Mnih and Rezende 2016; REBAR, Tucker et al. 2017; RELAX, Grathwohl et al. 2018): a sigmoid
belief network with one or two stochastic layers of ``--units`` (200) Bernoulli units,
``h1`` next to the image and ``h2`` above it,

    p(h_L) = Bernoulli(sigmoid(b)),  p(h_l | h_{l+1}) = Bernoulli(sigmoid(W_l h_{l+1} + c_l)),
    p(x | h_1) = Bernoulli(sigmoid(W_0 h_1 + c_0)),
    q(h_1 | x) = Bernoulli(sigmoid(U_1 x + d_1)),  q(h_2 | h_1) = Bernoulli(sigmoid(U_2 h_1 + d_2)),

trained on the scikit-learn digits binarized at 0.5 (64 pixels; ``--mnist PATH`` for MNIST
through ``genvi.data.mnist``) with Adam on minibatches of ``--batch`` images drawn by step
number (the same sequence for every runner) from the same initial parameters.

Each genvi runner is the per-image objective (``gv.objectives.elbo``, or
``gv.objectives.vimco``) of the same model and guide, vmapped over the minibatch and
summed; only the strategy of the guide's layers changes, one entry of :data:`ESTIMATORS`
each. ``numpyro_tracegraph`` is the same SBN written in NumPyro (``plate`` over the
minibatch), trained by ``TraceGraph_ELBO`` with the same optimizer (optax's Adam through
``optax_to_numpyro``).

Checked before timing (``CheckFailed`` otherwise): genvi's and NumPyro's log densities
are equal on the same sampled ``h`` (exactly, float rounding), and at the initial
parameters every runner's value estimate has the mean of genvi's REINFORCE ELBO (VIMCO's
that of ``gv.objectives.iwae`` with as many particles) within 4 standard errors.

The runners train interleaved (round-robin blocks of about ``--block`` seconds, the order
rotating), each for ``--seconds`` of its own step time (compilation and evaluation not
counted). Every ``1/--evals`` of the budget the held-out ELBO (``--test-samples``
samples per image) is recorded, and at ``--var-checkpoints`` points (the initial parameters
included) the gradient variance: the sum over the guide's parameters of the
per-coordinate variance of the minibatch gradient over ``--var-keys`` keys, at the
runner's current parameters, on a fixed minibatch. At the end the held-out IWAE bound
(``--iwae`` particles) too. Printed: a markdown table per layer count; ``--json PATH``
and ``--plot PATH`` save the rest.

    python benchmarks/sbn.py [--layers 1 2] [--seconds 60] [--units 200] [--batch 50] \
        [--estimators reinforce,nvil,...] [--mnist PATH] [--no-numpyro] [--quick] \
        [--json out.json] [--plot sbn.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import genvi as gv

BASELINE_HIDDEN = 100  # NVIL's input-dependent baseline: an MLP 64-100-1 (tanh)


class CheckFailed(Exception):
    """A runner does not compute what the benchmark says it does."""


# ---------------------------------------------------------------- the estimators
@dataclasses.dataclass(frozen=True)
class Estimator:
    """One way to train the guide: the distribution its layers sample with (a function of
    the baseline operand ``b``, ignored unless ``learned_baseline``) and the objective.

    ``runs(units, layers)`` is how many times one image's program runs per estimate (the
    continuation of each layer's choice, nested): estimators above ``--max-runs`` are
    skipped and reported so."""

    dist: Callable[[Any], Any]
    description: str
    objective: str = "elbo"  # or "vimco"
    particles: int = 1
    learned_baseline: bool = False
    relax: bool = False  # b: the surrogate's parameters, trained on the squared gradient
    biased: bool = False
    runs: Callable[[int, int], int] = lambda units, layers: 1


def _per_element(values: int):
    """The runs of a rule that evaluates the rest of the program at ``values`` values of
    each element of each layer (ENUM, MVD, the unordered set): nested, per layer."""
    return lambda units, layers: (values * units + 1) ** layers


RELAX_HIDDEN = 16


def relax_shapes(units: int) -> dict:
    return {
        "w1": (units, RELAX_HIDDEN),
        "b1": (RELAX_HIDDEN,),
        "w2": (RELAX_HIDDEN,),
        "b2": (),
    }


def relax_surrogate(params, z):
    """RELAX's control variate of one layer's relaxation ``z`` [units]: a small MLP of
    ``sigmoid(z)``; ``params`` flat (``relax_shapes`` in order)."""
    units = z.shape[-1]
    out, i = {}, 0
    for k, shape in relax_shapes(units).items():
        size = int(np.prod(shape, dtype=int))
        out[k] = params[i : i + size].reshape(shape)
        i += size
    h = jnp.tanh(jax.nn.sigmoid(z) @ out["w1"] + out["b1"])
    return jnp.sum(h @ out["w2"] + out["b2"])


ESTIMATORS: dict[str, Estimator] = {
    "reinforce": Estimator(
        lambda b: gv.bernoulli.reinforce,
        "REINFORCE (score function), no baseline: gv.bernoulli.reinforce",
    ),
    "nvil": Estimator(
        lambda b: gv.bernoulli.reinforce.with_baseline(b),
        "REINFORCE with NVIL's baseline: running mean + MLP(x) trained on (f - b)^2, "
        "gv.bernoulli.reinforce.with_baseline(b(x))",
        learned_baseline=True,
    ),
    "rloo4": Estimator(
        lambda b: gv.bernoulli.with_strategy(gv.LeaveOneOut(4)),
        "RLOO: 4 draws per layer, each with the mean of the others as baseline, "
        "gv.LeaveOneOut(4) (nested: 4^L runs)",
        runs=lambda units, layers: 4**layers,
    ),
    "vimco4": Estimator(
        lambda b: gv.bernoulli,
        "VIMCO, 4 particles: gv.objectives.vimco (trains the IWAE(4) bound, not the ELBO)",
        objective="vimco",
        particles=4,
        runs=lambda units, layers: 4,
    ),
    "mvd": Estimator(
        lambda b: gv.bernoulli.mvd,
        "measure-valued derivative, element-wise: gv.bernoulli.mvd",
        runs=_per_element(2),
    ),
    "enum": Estimator(
        lambda b: gv.bernoulli.enum,
        "ENUM, element-wise (each unit summed over {0, 1}, the others at their draw)",
        runs=_per_element(2),
    ),
    "unordered_set2": Estimator(
        lambda b: gv.bernoulli.with_strategy(gv.UnorderedSet(2)),
        "unordered set estimator, sets of 2 (for a binary unit: both values, element-wise)",
        runs=_per_element(2),
    ),
    "rebar": Estimator(
        lambda b: gv.bernoulli.with_strategy(gv.Rebar(1.0, 0.5)),
        "REBAR, eta 1, temperature 0.5: the program at the draw and at two relaxed values, "
        "gv.bernoulli.with_strategy(gv.Rebar(1.0, 0.5)) (nested: 3^L runs)",
        runs=lambda units, layers: 3**layers,
    ),
    "relax": Estimator(
        lambda b: gv.bernoulli.with_strategy(gv.Relax(relax_surrogate), (b,)),
        "RELAX: a surrogate MLP of sigmoid(z) (200-16-1, tanh, shared by the layers) trained "
        "on the squared guide gradient, gv.bernoulli.with_strategy(gv.Relax(c), (params,))",
        relax=True,
    ),
    "gumbel_st": Estimator(
        lambda b: gv.bernoulli.with_strategy(gv.GumbelSoftmaxBiased(1.0)),
        "Gumbel-softmax straight-through, temperature 1: BIASED",
        biased=True,
    ),
}


# ---------------------------------------------------------------- model, guide, parameters
def make_model(layers: int):
    """The SBN ``p(h_L) ... p(h_1 | h_2) p(x | h_1)`` of one image, in genvi."""

    @gv.gen
    def model(mp):
        h = gv.bernoulli(mp["prior"]) @ f"h{layers}"
        for lay in range(layers - 1, 0, -1):  # h_lay | h_{lay+1}
            w = mp["hidden"][lay - 1]
            h = gv.bernoulli(h @ w["w"] + w["b"]) @ f"h{lay}"
        gv.bernoulli(h @ mp["out"]["w"] + mp["out"]["b"]) @ "x"

    return model


def make_guide(layers: int, dist: Callable[[Any], Any]):
    """``q(h_1 | x) q(h_2 | h_1) ...`` of one image; ``b`` is the baseline operand."""

    @gv.gen
    def guide(gp, x, b):
        h = x
        for lay in range(1, layers + 1):
            h = dist(b)(h @ gp[lay - 1]["w"] + gp[lay - 1]["b"]) @ f"h{lay}"

    return guide


def init_params(key, layers: int, units: int, pixels: int, pixel_mean):
    """Gaussian weights (scale ``1/sqrt(fan-in)``), small Gaussian biases, the output's
    bias at the logit of the mean training image (as in the literature).

    No logit starts at exactly 0: there, the gradient of NumPyro's Bernoulli log density
    (which ``gv.bernoulli`` uses) is wrong under this jax (1 instead of 1/2, see
    ``benchmarks/README.md``), which would bias every runner's first steps alike."""
    keys = iter(jax.random.split(key, 4 * layers + 4))

    def dense(m, n):
        w = jax.random.normal(next(keys), (m, n)) / np.sqrt(m)
        return {"w": w, "b": 0.1 * jax.random.normal(next(keys), (n,))}

    m = np.clip(np.asarray(pixel_mean, np.float64), 1e-3, 1 - 1e-3)
    out = dense(units, pixels)
    out["b"] = jnp.asarray(np.log(m) - np.log1p(-m), jnp.float32)
    return {
        "model": {
            "prior": 0.1 * jax.random.normal(next(keys), (units,)),
            "hidden": [dense(units, units) for _ in range(layers - 1)],
            "out": out,
        },
        "guide": [dense(pixels, units)] + [dense(units, units) for _ in range(layers - 1)],
    }


def init_baseline(key, pixels: int):
    k1, _ = jax.random.split(key)
    return {
        "h": {
            "w": jax.random.normal(k1, (pixels, BASELINE_HIDDEN)) / np.sqrt(pixels),
            "b": jnp.zeros(BASELINE_HIDDEN),
        },
        "out": {"w": jnp.zeros((BASELINE_HIDDEN,)), "b": jnp.zeros(())},
    }


def baseline_mlp(bp, xs):
    return jnp.tanh(xs @ bp["h"]["w"] + bp["h"]["b"]) @ bp["out"]["w"] + bp["out"]["b"]


def batch_of(train, t, batch: int, stream: int = 11):
    """The minibatch of step ``t``: the same for every runner (other ``stream``s: other
    minibatches, independent of the training sequence)."""
    key = jax.random.fold_in(jax.random.key(stream), t)
    idx = jax.random.randint(key, (batch,), 0, train.shape[0])
    return train[idx]


# ---------------------------------------------------------------- genvi runners
@dataclasses.dataclass
class Runner:
    """A trainer: ``step(state, t, train) -> (state, elbo estimate per image)`` (jitted),
    ``params(state)``, ``probe(state, key, xs) -> (value per image, flat guide gradient)``."""

    name: str
    description: str
    step: Callable
    state: Any
    params: Callable
    probe: Callable
    biased: bool = False
    objective: str = "elbo"
    particles: int = 1


def per_image(objective):
    """The objective's estimates of a minibatch, one per image (vmapped over images)."""

    def f(params, key, xs, bs):
        keys = jax.random.split(key, xs.shape[0])

        def one(k, x, b):
            return objective.estimate(k, (params["model"],), (params["guide"], x, b), {"x": x})

        return jax.vmap(one)(keys, xs, bs)

    return f


def genvi_runner(name, est: Estimator, layers, p0, opt, batch: int, seed: int, xs0) -> Runner:
    """The genvi trainer of ``est``; a learned baseline starts at the mean ELBO estimate of
    the minibatch ``xs0`` (independent draws), its MLP at zero."""
    model, guide = make_model(layers), make_guide(layers, est.dist)
    if est.objective == "vimco":
        objective = gv.objectives.vimco(model, guide, particles=est.particles)
    else:
        objective = gv.objectives.elbo(model, guide)
    f = per_image(objective)
    pixels = p0["guide"][0]["w"].shape[0]
    bopt = optax.adam(3e-3)
    train_key = jax.random.key(seed + 100)

    def baselines(state, xs):
        if est.relax:  # the surrogate's parameters, the same for every image
            return jnp.broadcast_to(state["rparams"], (xs.shape[0],) + state["rparams"].shape)
        if not est.learned_baseline:
            return jnp.zeros(xs.shape[0])
        return state["c"] + baseline_mlp(state["bparams"], xs)

    def objective_and_grad(params, key, xs, bs):
        def total(p):
            vs = f(p, key, xs, bs)
            return jnp.sum(vs), vs

        (_, vs), g = jax.value_and_grad(total, has_aux=True)(params)
        return vs, g

    def step(state, t, train):
        xs = batch_of(train, t, batch)
        bs = jax.lax.stop_gradient(baselines(state, xs))
        vs, g = objective_and_grad(state["params"], jax.random.fold_in(train_key, t), xs, bs)
        upd, opt_state = opt.update(jax.tree.map(jnp.negative, g), state["opt"], state["params"])
        new = dict(state, params=optax.apply_updates(state["params"], upd), opt=opt_state)
        if est.relax:
            # the surrogate minimizes the variance: the mean of the gradient is the same
            # for every surrogate, so the squared norm of the estimate is its variance plus
            # a constant; differentiated through the estimator (on the same key and images)
            def sq(rp):
                bs_r = jnp.broadcast_to(rp, (xs.shape[0],) + rp.shape)
                key_t = jax.random.fold_in(train_key, t)
                _, g_r = objective_and_grad(state["params"], key_t, xs, bs_r)
                return jnp.sum(ravel_pytree(g_r["guide"])[0] ** 2)

            rupd, ropt_state = bopt.update(jax.grad(sq)(state["rparams"]), state["ropt"])
            new["rparams"] = optax.apply_updates(state["rparams"], rupd)
            new["ropt"] = ropt_state
        if est.learned_baseline:
            target = jax.lax.stop_gradient(vs) - state["c"]
            loss = lambda bp: jnp.mean((target - baseline_mlp(bp, xs)) ** 2)  # noqa: E731
            bupd, bopt_state = bopt.update(jax.grad(loss)(state["bparams"]), state["bopt"])
            new["bparams"] = optax.apply_updates(state["bparams"], bupd)
            new["bopt"] = bopt_state
            mean = jnp.mean(jax.lax.stop_gradient(vs))
            new["c"] = 0.9 * state["c"] + 0.1 * mean
        return new, jnp.mean(vs)

    def probe(state, key, xs):
        bs = jax.lax.stop_gradient(baselines(state, xs))
        vs, g = objective_and_grad(state["params"], key, xs, bs)
        return jnp.mean(vs), ravel_pytree(g["guide"])[0]

    state: dict[str, Any] = {"params": p0, "opt": opt.init(p0)}
    if est.relax:
        units = p0["guide"][0]["w"].shape[1]
        size = sum(int(np.prod(sh, dtype=int)) for sh in relax_shapes(units).values())
        rp = 0.01 * jax.random.normal(jax.random.key(seed + 400), (size,))
        state.update(rparams=rp, ropt=bopt.init(rp))
    if est.learned_baseline:
        bp = init_baseline(jax.random.key(seed + 200), pixels)
        c0 = jnp.mean(f(p0, jax.random.key(seed + 300), xs0, jnp.zeros(xs0.shape[0])))
        state.update(bparams=bp, bopt=bopt.init(bp), c=c0)
    return Runner(
        f"genvi_{name}",
        est.description,
        jax.jit(step),
        state,
        lambda s: s["params"],
        jax.jit(probe),
        est.biased,
        est.objective,
        est.particles,
    )


# ---------------------------------------------------------------- NumPyro
def numpyro_sbn(layers: int, p0):
    """The same SBN and guide in NumPyro: ``(model, guide)`` of a minibatch ``xs``."""
    import numpyro
    import numpyro.distributions as nd

    def nmodel(xs):
        mp = cast(dict, numpyro.param("model", p0["model"]))
        with numpyro.plate("data", xs.shape[0]):
            units = mp["prior"].shape[0]
            prior = nd.Bernoulli(logits=mp["prior"]).expand([xs.shape[0], units]).to_event(1)
            h = cast(jax.Array, numpyro.sample(f"h{layers}", prior))
            for lay in range(layers - 1, 0, -1):
                w = mp["hidden"][lay - 1]
                site = nd.Bernoulli(logits=h @ w["w"] + w["b"]).to_event(1)
                h = cast(jax.Array, numpyro.sample(f"h{lay}", site))
            logits = h @ mp["out"]["w"] + mp["out"]["b"]
            numpyro.sample("x", nd.Bernoulli(logits=logits).to_event(1), obs=xs)

    def nguide(xs):
        gp = cast(list, numpyro.param("guide", p0["guide"]))
        with numpyro.plate("data", xs.shape[0]):
            h = xs
            for lay in range(1, layers + 1):
                w = gp[lay - 1]
                site = nd.Bernoulli(logits=h @ w["w"] + w["b"]).to_event(1)
                h = cast(jax.Array, numpyro.sample(f"h{lay}", site))

    return nmodel, nguide


def numpyro_runner(layers, p0, lr, batch: int, train) -> Runner:
    import numpyro
    from numpyro.infer import SVI, TraceGraph_ELBO

    nmodel, nguide = numpyro_sbn(layers, p0)
    svi = SVI(nmodel, nguide, numpyro.optim.optax_to_numpyro(optax.adam(lr)), TraceGraph_ELBO())
    state = svi.init(jax.random.key(3), batch_of(train, 0, batch))

    def step(s, t, train):
        s, loss = svi.update(s, batch_of(train, t, batch))
        return s, -loss / batch

    def probe(s, key, xs):
        loss = lambda p: -svi.loss.loss(key, p, nmodel, nguide, xs)  # noqa: E731
        v, g = jax.value_and_grad(loss)(svi.get_params(s))
        return v / xs.shape[0], ravel_pytree(g["guide"])[0]

    return Runner(
        "numpyro_tracegraph",
        "NumPyro TraceGraph_ELBO: score function with Rao-Blackwellized downstream costs, "
        "no baseline",
        jax.jit(step),
        state,
        svi.get_params,
        jax.jit(probe),
    )


# ---------------------------------------------------------------- checks
def check_densities(layers, p0, xs, key):
    """genvi's and NumPyro's ``log p(x, h) - log q(h | x)`` on the same sampled ``h``."""
    from numpyro.infer.util import log_density

    model, guide = make_model(layers), make_guide(layers, lambda b: gv.bernoulli)
    keys = jax.random.split(key, xs.shape[0])

    def one(k, x):
        tr = guide.simulate(k, p0["guide"], x, 0.0)
        logp, _ = model.assess(tr.choices.merge({"x": x}), p0["model"])
        return logp - tr.score, {f"h{i}": tr.choices[f"h{i}"] for i in range(1, layers + 1)}

    lw, hs = jax.vmap(one)(keys, xs)
    nmodel, nguide = numpyro_sbn(layers, p0)
    logp, _ = log_density(nmodel, (xs,), {}, {"model": p0["model"], **hs})
    logq, _ = log_density(nguide, (xs,), {}, {"guide": p0["guide"], **hs})
    got, want = float(logp - logq), float(jnp.sum(lw))
    if not abs(got - want) <= 1e-5 * max(1.0, abs(want)):
        raise CheckFailed(f"log p - log q on the same h: numpyro {got}, genvi {want}")
    return {"genvi": want, "numpyro": got}


def check_values(probes: dict, reference: dict, k: float = 4.0):
    """Each runner's mean value estimate against its reference's, within ``k`` standard
    errors of the difference. ``probes``: name -> value samples; ``reference``: name ->
    samples of the estimand it must equal."""
    out = {}
    for name, v in probes.items():
        r = reference[name]
        diff = float(np.mean(v) - np.mean(r))
        se = float(np.sqrt(np.var(v, ddof=1) / len(v) + np.var(r, ddof=1) / len(r)))
        out[name] = {"mean": float(np.mean(v)), "reference": float(np.mean(r)), "z": diff / se}
        if not abs(diff) <= k * se:
            raise CheckFailed(
                f"{name}: value estimate {np.mean(v):.4f} differs from its reference "
                f"{np.mean(r):.4f} by {diff / se:.1f} standard errors"
            )
    return out


def probe_study(runner: Runner, state, keys, xs):
    """``(value samples, guide gradient samples [keys, coordinates])`` at ``state``."""
    vals, grads = [], []
    for k in keys:
        v, g = runner.probe(state, k, xs)
        vals.append(float(v))
        grads.append(np.asarray(g, np.float64))
    return np.asarray(vals), np.stack(grads)


def bias_z2(g, ref):
    """Mean over coordinates of the squared standardized difference of two estimators'
    mean gradients (about 1 if both are unbiased for the same gradient)."""
    se2 = g.var(0, ddof=1) / len(g) + ref.var(0, ddof=1) / len(ref)
    keep = se2 > 1e-12 * (1 + np.abs(ref.mean(0))) ** 2
    return float(np.mean((g.mean(0) - ref.mean(0))[keep] ** 2 / se2[keep]))


def exact_elbo(params, xs, layers: int):
    """The minibatch's ELBO summed over every configuration of the hidden units (for a
    few units only: ``2^(units * layers)`` terms per image), written in plain JAX."""
    units = params["model"]["prior"].shape[0]
    bits = (np.arange(2 ** (units * layers))[:, None] >> np.arange(units * layers)) & 1
    hs = jnp.asarray(bits.reshape(-1, layers, units), jnp.float32)  # [C, layer, unit]
    mp, gp = params["model"], params["guide"]

    def lb(logits, h):  # log Bernoulli(h; sigmoid(logits)), summed over the last axis
        return jnp.sum(h * jax.nn.log_sigmoid(logits) + (1 - h) * jax.nn.log_sigmoid(-logits), -1)

    def one(x):
        logq, below = 0.0, jnp.broadcast_to(x, (hs.shape[0], x.shape[0]))
        for lay in range(layers):
            logq = logq + lb(below @ gp[lay]["w"] + gp[lay]["b"], hs[:, lay])
            below = hs[:, lay]
        logp = lb(mp["prior"], hs[:, layers - 1])
        for lay in range(layers - 1, 0, -1):  # p(h_lay | h_{lay+1}), lay counted from 1
            w = mp["hidden"][lay - 1]
            logp = logp + lb(hs[:, lay] @ w["w"] + w["b"], hs[:, lay - 1])
        logp = logp + lb(hs[:, 0] @ mp["out"]["w"] + mp["out"]["b"], x)
        return jnp.sum(jnp.exp(logq) * (logp - logq))

    return jnp.sum(jax.vmap(one)(xs))


def check_exact(layers: int, names, units: int = 4, batch: int = 4, n_keys: int = 2000, k=5.0):
    """Brute force at a few units: each runner's mean guide gradient at the initial
    parameters against the exact ELBO gradient, coordinate by coordinate in standard
    errors. Unbiased ELBO runners must stay within ``k`` (Bonferroni-safe for the ~150
    coordinates); biased ones (Gumbel straight-through) are reported. VIMCO's IWAE
    gradient has no brute-force twin here and is left out."""
    from genvi import data

    ds = data.digits(seed=0)
    train = jnp.asarray(ds.train)
    p0 = init_params(jax.random.key(0), layers, units, train.shape[1], ds.train.mean(0))
    xs = batch_of(train, 0, batch, stream=12)
    exact = np.asarray(ravel_pytree(jax.grad(exact_elbo)(p0, xs, layers)["guide"])[0])
    opt = optax.adam(1e-3)
    runners = {}
    for n in names:
        if n == "numpyro_tracegraph":
            runners[n] = numpyro_runner(layers, p0, 1e-3, batch, train)
        elif ESTIMATORS[n].objective == "elbo":
            runners[n] = genvi_runner(n, ESTIMATORS[n], layers, p0, opt, batch, 0, xs)
    out = {}
    for i, (n, r) in enumerate(runners.items()):
        f = jax.jit(jax.vmap(lambda kk, r=r: r.probe(r.state, kk, xs)[1]))
        keys = jax.random.split(jax.random.key(1000 + i), n_keys)
        g = np.concatenate([np.asarray(f(c), np.float64) for c in np.array_split(keys, 8)])
        se = g.std(0, ddof=1) / np.sqrt(n_keys)
        keep = se > 1e-7
        z = (g.mean(0) - exact)[keep] / se[keep]
        out[n] = {"max_abs_z": float(np.abs(z).max()), "mean_z2": float(np.mean(z**2))}
        if not r.biased and not out[n]["max_abs_z"] <= k:
            raise CheckFailed(
                f"{n}: mean gradient {out[n]['max_abs_z']:.1f} standard errors from the exact "
                f"ELBO gradient ({layers} layers, {units} units)"
            )
    return out


# ---------------------------------------------------------------- held-out bounds
def make_bounds(layers, samples: int, particles: int):
    """``(elbo, iwae)``: jitted held-out bounds per image, averaged over a test set."""
    model, guide = make_model(layers), make_guide(layers, lambda b: gv.bernoulli)
    elbo = gv.objectives.elbo(model, guide)
    iwae = gv.objectives.iwae(model, guide, particles=particles)

    def bound(objective, reps):
        def one(params, k, x):
            ks = jax.random.split(k, reps)

            def est(kk):
                guide_args = (params["guide"], x, 0.0)
                return objective.estimate(kk, (params["model"],), guide_args, {"x": x})

            return jnp.mean(jax.vmap(est)(ks))

        def f(params, key, xs):
            keys = jax.random.split(key, xs.shape[0])
            vals = jax.lax.map(lambda a: one(params, *a), (keys, xs), batch_size=128)
            return jnp.mean(vals)

        return jax.jit(f)

    return bound(elbo, samples), bound(iwae, 1)


# ---------------------------------------------------------------- one layer count
def run_layers(layers: int, args, ds) -> dict:
    train, test = jnp.asarray(ds.train), jnp.asarray(ds.test)
    pixels = train.shape[1]
    p0 = init_params(jax.random.key(args.seed), layers, args.units, pixels, ds.train.mean(0))
    opt = optax.adam(args.lr)
    xs_fixed = batch_of(train, 0, args.batch, stream=12)  # the variance study's minibatch
    info: dict[str, Any] = {"skipped": {}, "objectives": {}}

    runners: dict[str, Runner] = {}
    for name in args.estimators:
        est = ESTIMATORS[name]
        runs = est.runs(args.units, layers)
        if runs > args.max_runs:
            info["skipped"][f"genvi_{name}"] = (
                f"{runs} runs of the program per image and estimate (> --max-runs {args.max_runs})"
            )
            continue
        runners[f"genvi_{name}"] = genvi_runner(
            name,
            est,
            layers,
            p0,
            opt,
            args.batch,
            args.seed,
            batch_of(train, 0, args.batch, stream=13),
        )
    if args.numpyro:
        info["densities_equal"] = check_densities(layers, p0, xs_fixed, jax.random.key(5))
        runners["numpyro_tracegraph"] = numpyro_runner(layers, p0, args.lr, args.batch, train)
    for r in runners.values():
        info["objectives"][r.name] = r.description

    # Checkpoint 0 (the initial parameters, the same for all): values and gradients.
    var_keys = list(jax.random.split(jax.random.key(args.seed + 7), args.var_keys))
    t0 = time.perf_counter()
    study = {n: probe_study(r, r.state, var_keys, xs_fixed) for n, r in runners.items()}
    info["probe_s"] = time.perf_counter() - t0
    elbo_ref = study["genvi_reinforce"][0] if "genvi_reinforce" in study else None
    if elbo_ref is None:
        ref_est = make_genvi_reference(layers, p0, opt, args)
        elbo_ref = probe_study(ref_est, ref_est.state, var_keys[::-1], xs_fixed)[0]
    reference = {}
    for n, r in runners.items():
        if r.objective == "vimco":
            reference[n] = iwae_samples(layers, r.particles, p0, xs_fixed, args.var_keys)
        else:
            reference[n] = elbo_ref
    values = {n: s[0] for n, s in study.items()}
    info["value_check"] = check_values(
        {n: v for n, v in values.items() if n != "genvi_reinforce"}, reference
    )
    unbiased = [n for n, r in runners.items() if not r.biased and r.objective == "elbo"]
    best = min(unbiased, key=lambda n: study[n][1].var(0, ddof=1).sum()) if unbiased else None
    info["bias_reference"] = best
    bias = {n: bias_z2(s[1], study[best][1]) for n, s in study.items() if best} if best else {}

    elbo_fn, iwae_fn = make_bounds(layers, args.test_samples, args.iwae)
    eval_key = jax.random.key(args.seed + 9)
    curves = {n: {"seconds": [], "steps": [], "elbo": []} for n in runners}
    variance = {
        n: {"seconds": [0.0], "steps": [0], "guide": [float(study[n][1].var(0, ddof=1).sum())]}
        for n in runners
    }
    init_bound = float(elbo_fn(p0, eval_key, test))
    for c in curves.values():
        c["seconds"].append(0.0)
        c["steps"].append(0)
        c["elbo"].append(init_bound)

    # Compile, and time the first call.
    compile_s, steps_done, elapsed, block_times, steps_per = {}, {}, {}, {}, {}
    for n, r in runners.items():
        t = time.perf_counter()
        r.state, _ = r.step(r.state, 0, train)
        jax.block_until_ready(r.state)
        compile_s[n] = time.perf_counter() - t
        t = time.perf_counter()
        r.state, _ = r.step(r.state, 1, train)
        jax.block_until_ready(r.state)
        one = time.perf_counter() - t
        steps_per[n] = max(1, int(args.block / max(one, 1e-5)))
        steps_done[n], elapsed[n], block_times[n] = 2, one, []

    eval_every = args.seconds / args.evals
    var_at = [
        args.seconds * (i + 1) / (args.var_checkpoints - 1) for i in range(args.var_checkpoints - 1)
    ]
    next_eval = dict.fromkeys(runners, eval_every)
    next_var = {n: 0 for n in runners}
    rnd = 0
    while True:
        active = [n for n in runners if elapsed[n] < args.seconds]
        if not active:
            break
        order = active[rnd % len(active) :] + active[: rnd % len(active)]
        rnd += 1
        for n in order:
            r = runners[n]
            t = time.perf_counter()
            s = r.state
            for i in range(steps_per[n]):
                s, _ = r.step(s, steps_done[n] + i, train)
            jax.block_until_ready(s)
            dt = time.perf_counter() - t
            r.state = s
            steps_done[n] += steps_per[n]
            elapsed[n] += dt
            block_times[n].append(dt / steps_per[n])
            done = elapsed[n] >= args.seconds
            if elapsed[n] >= next_eval[n] or done:
                next_eval[n] += eval_every
                curves[n]["seconds"].append(elapsed[n])
                curves[n]["steps"].append(steps_done[n])
                curves[n]["elbo"].append(float(elbo_fn(r.params(s), eval_key, test)))
            while next_var[n] < len(var_at) and (elapsed[n] >= var_at[next_var[n]] or done):
                next_var[n] += 1
                _, g = probe_study(r, s, var_keys, xs_fixed)
                variance[n]["seconds"].append(elapsed[n])
                variance[n]["steps"].append(steps_done[n])
                variance[n]["guide"].append(float(g.var(0, ddof=1).sum()))

    rows = {}
    for n, r in runners.items():
        med = statistics.median(block_times[n])
        params = r.params(r.state)
        rows[n] = {
            "median_step_ms": 1e3 * med,
            "compile_s": compile_s[n],
            "steps": steps_done[n],
            "seconds": elapsed[n],
            "grad_var_init": variance[n]["guide"][0],
            "grad_var_end": variance[n]["guide"][-1],
            "var_x_step_init": variance[n]["guide"][0] * med,
            "bias_z2_init": bias.get(n),
            "heldout_elbo": curves[n]["elbo"][-1],
            f"heldout_iwae{args.iwae}": float(iwae_fn(params, eval_key, test)),
            "biased": r.biased,
            "objective": r.objective if r.particles == 1 else f"{r.objective}({r.particles})",
        }
    if "numpyro_tracegraph" in rows:
        base = rows["numpyro_tracegraph"]["median_step_ms"]
        for row in rows.values():
            row["ratio_to_numpyro"] = row["median_step_ms"] / base
    return {
        "rows": rows,
        "curves": curves,
        "variance": variance,
        "initial_heldout_elbo": init_bound,
        **info,
    }


def make_genvi_reference(layers, p0, opt, args) -> Runner:
    est = ESTIMATORS["reinforce"]
    return genvi_runner("reinforce", est, layers, p0, opt, args.batch, args.seed, None)


def iwae_samples(layers, particles, p0, xs, n):
    """IWAE(``particles``) estimates of a minibatch (mean per image) over ``n`` keys."""
    model, guide = make_model(layers), make_guide(layers, lambda b: gv.bernoulli)
    f = per_image(gv.objectives.iwae(model, guide, particles=particles))
    fn = jax.jit(lambda k: jnp.mean(f(p0, k, xs, jnp.zeros(xs.shape[0]))))
    return np.asarray([float(fn(k)) for k in jax.random.split(jax.random.key(17), n)])


# ---------------------------------------------------------------- reporting
def winners(rows: dict) -> dict:
    unbiased = {n: r for n, r in rows.items() if not r["biased"]}
    return {
        "best_heldout_elbo": max(rows, key=lambda n: rows[n]["heldout_elbo"]),
        "best_heldout_elbo_unbiased": max(unbiased, key=lambda n: unbiased[n]["heldout_elbo"]),
        "lowest_var_x_step_init": min(rows, key=lambda n: rows[n]["var_x_step_init"]),
        "lowest_var_x_step_init_unbiased": min(
            unbiased, key=lambda n: unbiased[n]["var_x_step_init"]
        ),
    }


def table(layers: int, res: dict, iwae: int) -> str:
    head = (
        "| estimator | step ms | / numpyro | steps | grad var, init | grad var, end "
        f"| var x step (init) | held-out ELBO | held-out IWAE({iwae}) |"
    )
    lines = [
        f"**{layers} stochastic layer{'s' if layers > 1 else ''}**",
        "",
        head,
        "|" + "---|" * 9,
    ]
    for n, r in res["rows"].items():
        label = (
            n
            + (" (biased)" if r["biased"] else "")
            + (f" [{r['objective']}]" if r["objective"] != "elbo" else "")
        )
        ratio = f"{r['ratio_to_numpyro']:.2f}" if "ratio_to_numpyro" in r else "-"
        lines.append(
            f"| {label} | {r['median_step_ms']:.3g} | {ratio} | {r['steps']} | {r['grad_var_init']:.3g} "
            f"| {r['grad_var_end']:.3g} | {r['var_x_step_init']:.3g} | {r['heldout_elbo']:.2f} "
            f"| {r[f'heldout_iwae{iwae}']:.2f} |"
        )
    for n, why in res["skipped"].items():
        lines.append(f"| {n} | not run: {why} |" + " |" * 7)
    return "\n".join(lines)


def plot(results: dict, path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for res in results.values() for n in res["rows"]})
    colour = {n: ("k" if n.startswith("numpyro") else f"C{i}") for i, n in enumerate(names)}
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4 * len(results)), squeeze=False)
    for row, (layers, res) in zip(axes, results.items(), strict=True):
        for n in res["rows"]:
            style = "--" if n.startswith("numpyro") else "-"
            label = n.removeprefix("genvi_") + (" (biased)" if res["rows"][n]["biased"] else "")
            c, v = res["curves"][n], res["variance"][n]
            row[0].plot(c["seconds"], c["elbo"], style, color=colour[n], label=label)
            row[1].semilogy(
                v["seconds"], v["guide"], style + "o", color=colour[n], label=label, ms=3
            )
        row[0].set_ylabel(
            f"held-out ELBO per image (nats), {layers} layer{'s' if layers > 1 else ''}"
        )
        row[1].set_ylabel("gradient variance, guide (sum over coordinates)")
        for ax in row:
            ax.set_xlabel("training time (s; compilation and evaluation excluded)")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join((__doc__ or "").split("\n\n")[0].split()))
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seconds", type=float, default=60.0, help="training time per runner")
    ap.add_argument("--block", type=float, default=0.5, help="seconds per interleaved block")
    ap.add_argument("--evals", type=int, default=15, help="held-out evaluations per run")
    ap.add_argument("--var-checkpoints", type=int, default=4)
    ap.add_argument("--var-keys", type=int, default=50)
    ap.add_argument("--test-samples", type=int, default=10, help="ELBO samples per test image")
    ap.add_argument("--iwae", type=int, default=100, help="particles of the final IWAE bound")
    ap.add_argument("--max-runs", type=int, default=1000, help="skip estimators above this")
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--mnist", default=None, help="MNIST files (see genvi.data.mnist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-numpyro", dest="numpyro", action="store_false")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    args.estimators = [e for e in args.estimators.split(",") if e]
    unknown = [e for e in args.estimators if e not in ESTIMATORS]
    if unknown:
        ap.error(f"unknown estimators {unknown}; known: {', '.join(ESTIMATORS)}")
    if args.quick:
        args.units, args.batch, args.seconds, args.block = 8, 8, 0.3, 0.05
        args.evals, args.var_checkpoints, args.var_keys, args.iwae = 2, 2, 24, 8
        args.test_samples = 2
    if args.numpyro:
        try:
            import numpyro  # noqa: F401
        except ImportError:  # pragma: no cover
            args.numpyro = False

    from genvi import data

    ds = data.digits(seed=0) if args.mnist is None else data.mnist(args.mnist, seed=0)
    if args.quick:
        ds = ds._replace(test=ds.test[:64])
    results = {layers: run_layers(layers, args, ds) for layers in args.layers}
    out = {
        "device": str(jax.devices()[0]),
        "data": {"name": ds.name, "train": int(ds.train.shape[0]), "test": int(ds.test.shape[0])},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "plot")},
        "results": {str(k): v for k, v in results.items()},
        "winners": {str(k): winners(v["rows"]) for k, v in results.items()},
    }
    for layers, res in results.items():
        print(table(layers, res, args.iwae))
        print(f"\nwinners: {json.dumps(out['winners'][str(layers)])}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if args.plot:
        plot(results, args.plot, f"Sigmoid belief network, {ds.name}, {args.units} units per layer")
    return out


if __name__ == "__main__":
    main()
