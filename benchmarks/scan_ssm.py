"""One ELBO training step of a state-space model: genvi's ``gv.scan`` vs one hand-written
``lax.scan`` vs hand-written vectorized JAX vs NumPyro's ``contrib.control_flow.scan``.

Two models, each an AR(1) latent chain with level ``c``, coefficient ``a`` and step scale
``q`` (standard deviations throughout), started at ``z_0 = c`` so ``z_1 ~ N(c, q)``:

- ``lgssm``: ``z_t ~ N(a z_{t-1}, q)``, ``y_t ~ N(z_t, r)`` (``c = 0``); model parameters
  ``(a, log q, log r)``.
- ``sv`` (stochastic volatility): ``h_t ~ N(mu + phi (h_{t-1} - mu), sigma)``,
  ``y_t ~ N(0, exp(h_t / 2))``; model parameters ``(mu, phi, log sigma)``.

The guide is mean-field Gaussian, ``q(z_t) = N(m_t, s_t)`` with free ``m`` and ``log s``.
A step is the single-sample reparameterized ELBO, its gradient in the model's and the
guide's parameters, and an optax Adam update, all jitted. Runners:

- ``hand_scan``: ONE ``lax.scan`` over t drawing ``eps_t``, forming ``z_t = m_t + s_t eps_t``
  and accumulating ``log p - log q``; ``jax.value_and_grad`` (the reference for ratios);
- ``hand_vec``: all ``eps`` drawn at once, densities vectorized (the AR term on
  ``z[:-1], z[1:]``); ``jax.value_and_grad``;
- ``genvi``: model and guide are ``gv.scan`` of a one-step ``@gv.gen`` body (the model's
  draws ``"z"`` and ``"y"``, the model's parameters riding in the carry; the guide's draws
  ``"z"`` from its per-step parameters passed as ``xs``), the objective
  ``gv.objectives.elbo(model, guide)`` and its ``value_and_grad_estimate``;
- ``numpyro``: model and guide written with ``numpyro.contrib.control_flow.scan``,
  ``SVI(..., Trace_ELBO())`` with the same optax Adam, ``svi.update`` inside ``jax.jit``.

Correctness, before any timing, at every ``T``: both ELBOs have a closed form (Gaussian
expectations of quadratics, and for ``sv`` the lognormal mean
``E[exp(-h_t)] = exp(-m_t + s_t^2 / 2)``). For each runner the mean of ``--check-keys``
one-sample ELBO estimates must lie within 4 standard errors of it, and the mean of the
reparameterized gradients within ``k`` standard errors of ``jax.grad`` of the closed form
in every checked coordinate: the model's parameters, and the guide's ``m`` and ``log s``
summed over at most 32 blocks of consecutive steps (single steps at small ``T``; see
:func:`checked_coordinates` for why), ``k`` Bonferroni-corrected over them at a
family-wise level of 1e-3, at least 4. A runner that fails raises: no numbers are
reported for a runner that computes something else.

Timing: the runners are interleaved round-robin over ``--rounds`` rounds (the order
rotates every round), each round timing ``--steps`` steps after a warm-up; the table gives
median step times as ratios to ``hand_scan`` and ``hand_vec``, and first-call (compile +
first step) times (for NumPyro the first ``svi.update``; ``svi.init`` is left out). On a shared machine absolute times are noise; the ratios are the figure.

    python benchmarks/scan_ssm.py [--T 100 1000 10000] [--models lgssm sv] [--rounds 5]
        [--steps 20] [--check-keys 200] [--no-numpyro] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

import genvi as gv

LOG2PI = math.log(2 * math.pi)
LR = 1e-2


# ---------------------------------------------------------------- the two models
class SSM(NamedTuple):
    """An AR(1) latent chain and its emission, in the form every runner needs."""

    name: str
    true_theta: dict
    init_theta: dict
    ar: Callable  # theta -> (level c, coefficient a, step scale q)
    emission: Callable  # (theta, z) -> (loc, scale) of y given z
    expected_emission: Callable  # (theta, y, m, s) -> E_q[log p(y_t | z_t)] per t


def _lgssm_ar(th):
    return 0.0, th["a"], jnp.exp(th["log_q"])


def _lgssm_emission(th, z):
    return z, jnp.exp(th["log_r"])


def _lgssm_expected_emission(th, y, m, s):
    r = jnp.exp(th["log_r"])
    return -0.5 * LOG2PI - th["log_r"] - ((y - m) ** 2 + s**2) / (2 * r**2)


def _sv_ar(th):
    return th["mu"], th["phi"], jnp.exp(th["log_sigma"])


def _sv_emission(th, h):
    return jnp.zeros_like(h), jnp.exp(h / 2)


def _sv_expected_emission(th, y, m, s):
    # log N(y; 0, exp(h/2)) = -log(2 pi)/2 - h/2 - y^2 exp(-h) / 2, and h ~ N(m, s) gives
    # E[exp(-h)] = exp(-m + s^2 / 2)
    return -0.5 * LOG2PI - m / 2 - 0.5 * y**2 * jnp.exp(-m + s**2 / 2)


MODELS = {
    "lgssm": SSM(
        "lgssm",
        {"a": 0.9, "log_q": math.log(0.5), "log_r": math.log(0.3)},
        {"a": 0.5, "log_q": 0.0, "log_r": math.log(0.5)},
        _lgssm_ar,
        _lgssm_emission,
        _lgssm_expected_emission,
    ),
    "sv": SSM(
        "sv",
        {"mu": -1.0, "phi": 0.95, "log_sigma": math.log(0.3)},
        {"mu": 0.0, "phi": 0.5, "log_sigma": math.log(0.5)},
        _sv_ar,
        _sv_emission,
        _sv_expected_emission,
    ),
}


def as_arrays(theta):
    return {k: jnp.asarray(v, jnp.float32) for k, v in theta.items()}


def simulate_data(ssm: SSM, key, T):
    th = as_arrays(ssm.true_theta)
    c, a, q = ssm.ar(th)
    kz, ky = jax.random.split(key)

    def step(z, e):
        z = c + a * (z - c) + q * e
        return z, z

    _, z = jax.lax.scan(step, jnp.asarray(c, jnp.float32), jax.random.normal(kz, (T,)))
    loc, scale = ssm.emission(th, z)
    return loc + scale * jax.random.normal(ky, (T,))


def init_params(ssm: SSM, y):
    T = y.shape[0]
    m0 = 0.5 * y if ssm.name == "lgssm" else jnp.full((T,), -1.0)
    return {
        "model": as_arrays(ssm.init_theta),
        "guide": {"m": m0, "log_s": jnp.full((T,), math.log(0.3))},
    }


def normal_logpdf(x, loc, scale):
    return -0.5 * LOG2PI - jnp.log(scale) - 0.5 * ((x - loc) / scale) ** 2


# ---------------------------------------------------------------- the closed form
def exact_elbo(ssm: SSM, params, y):
    """``E_q[log p(y, z)] - E_q[log q(z)]`` for the mean-field Gaussian guide, exactly."""
    th, m, log_s = params["model"], params["guide"]["m"], params["guide"]["log_s"]
    s = jnp.exp(log_s)
    c, a, q = ssm.ar(th)
    m_prev = jnp.concatenate([jnp.full((1,), c), m[:-1]])  # z_0 = c, a constant
    s_prev = jnp.concatenate([jnp.zeros(1), s[:-1]])
    # E[(z_t - c - a (z_{t-1} - c))^2] under independent Gaussians
    sq = (m - c - a * (m_prev - c)) ** 2 + s**2 + a**2 * s_prev**2
    log_trans = -0.5 * LOG2PI - jnp.log(q) - sq / (2 * q**2)
    entropy = 0.5 * LOG2PI + log_s + 0.5
    return jnp.sum(log_trans + ssm.expected_emission(th, y, m, s) + entropy)


# ---------------------------------------------------------------- hand-written JAX
def hand_scan_elbo(ssm: SSM, params, key, y):
    th, g = params["model"], params["guide"]
    c, a, q = ssm.ar(th)
    T = y.shape[0]

    def step(carry, xs):
        z_prev, acc = carry
        k, m_t, ls_t, y_t = xs
        eps = jax.random.normal(k)
        s_t = jnp.exp(ls_t)
        z = m_t + s_t * eps
        loc, scale = ssm.emission(th, z)
        log_p = normal_logpdf(z, c + a * (z_prev - c), q) + normal_logpdf(y_t, loc, scale)
        log_q = -0.5 * LOG2PI - ls_t - 0.5 * eps**2
        return (z, acc + log_p - log_q), None

    z0 = jnp.asarray(c, jnp.float32)
    xs = (jax.random.split(key, T), g["m"], g["log_s"], y)
    (_, acc), _ = jax.lax.scan(step, (z0, jnp.zeros(())), xs)
    return acc


def hand_vec_elbo(ssm: SSM, params, key, y):
    th, g = params["model"], params["guide"]
    c, a, q = ssm.ar(th)
    eps = jax.random.normal(key, y.shape)
    z = g["m"] + jnp.exp(g["log_s"]) * eps
    z_prev = jnp.concatenate([jnp.full((1,), c), z[:-1]])
    loc, scale = ssm.emission(th, z)
    log_p = normal_logpdf(z, c + a * (z_prev - c), q) + normal_logpdf(y, loc, scale)
    log_q = -0.5 * LOG2PI - g["log_s"] - 0.5 * eps**2
    return jnp.sum(log_p - log_q)


def hand_vg(elbo_fn, ssm):
    def vg(params, key, y):
        return jax.value_and_grad(lambda p: elbo_fn(ssm, p, key, y))(params)

    return vg


# ---------------------------------------------------------------- genvi
def make_genvi_vg(ssm: SSM, T: int):
    @gv.gen
    def model_step(carry, _):
        z_prev, th = carry
        c, a, q = ssm.ar(th)
        z = gv.normal(c + a * (z_prev - c), q) @ "z"
        loc, scale = ssm.emission(th, z)
        gv.normal(loc, scale) @ "y"
        return (z, th), None

    @gv.gen
    def guide_step(carry, params_t):
        m_t, ls_t = params_t
        gv.normal(m_t, jnp.exp(ls_t)) @ "z"
        return carry, None

    model = gv.scan(model_step, length=T)
    guide = gv.scan(guide_step, length=T)
    objective = gv.objectives.elbo(model, guide)

    def vg(params, key, y):
        th, g = params["model"], params["guide"]
        z0 = jnp.asarray(ssm.ar(th)[0], jnp.float32)
        v, (g_model, g_guide) = objective.value_and_grad_estimate(
            key, ((z0, th), None), (None, (g["m"], g["log_s"])), {"y": y}, argnums=(0, 1)
        )
        # the model's args are ((z0, theta), None); z0 = c depends on theta only for sv's
        # mu, where its gradient is the chain rule's share through z0: add it back
        (g_z0, g_th), _ = g_model
        g_th = dict(g_th)
        if ssm.name == "sv":
            g_th["mu"] = g_th["mu"] + g_z0
        g_m, g_ls = g_guide[1]
        return v, {"model": g_th, "guide": {"m": g_m, "log_s": g_ls}}

    return vg


# ---------------------------------------------------------------- NumPyro
def make_numpyro(ssm: SSM, params0, y):
    """``(svi, vg)``: NumPyro's SVI and its ELBO estimate's value and gradient at given
    parameters (the negated ``Trace_ELBO`` loss, the function ``svi.update`` differentiates);
    ``None`` without numpyro."""
    try:
        import numpyro
        import numpyro.distributions as nd
        from numpyro.contrib.control_flow import scan as nscan
        from numpyro.infer import SVI, Trace_ELBO
    except ImportError:  # pragma: no cover
        return None

    names = list(params0["model"])

    def nmodel(y):
        th = {k: numpyro.param(k, params0["model"][k]) for k in names}
        c, a, q = ssm.ar(th)

        def step(z_prev, y_t):
            z = numpyro.sample("z", nd.Normal(c + a * (z_prev - c), q))
            loc, scale = ssm.emission(th, z)
            numpyro.sample("y", nd.Normal(loc, scale), obs=y_t)
            return z, None

        nscan(step, jnp.asarray(c, jnp.float32), y)

    def nguide(y):
        m = numpyro.param("m", params0["guide"]["m"])
        log_s = numpyro.param("log_s", params0["guide"]["log_s"])

        def step(carry, ms):
            numpyro.sample("z", nd.Normal(ms[0], jnp.exp(ms[1])))
            return carry, None

        nscan(step, None, (m, log_s))

    svi = SVI(nmodel, nguide, numpyro.optim.optax_to_numpyro(optax.adam(LR)), Trace_ELBO())

    def vg(params, key, y):
        flat = dict(params["model"]) | dict(params["guide"])

        def neg_loss(p):
            return -jnp.asarray(svi.loss.loss(key, p, nmodel, nguide, y))

        v, g = jax.value_and_grad(neg_loss)(flat)
        return v, {
            "model": {k: g[k] for k in names},
            "guide": {"m": g["m"], "log_s": g["log_s"]},
        }

    return svi, vg


# ---------------------------------------------------------------- checks
class CheckFailed(AssertionError):
    """A runner's estimates disagree with the closed form."""


BLOCKS = 32  # the guide's gradient is checked on at most this many block sums per vector


def checked_coordinates(grad):
    """The coordinates the gradient check tests: the model's parameters one by one, and
    each guide vector (``m``, ``log s``) summed over consecutive blocks of
    ``ceil(T / BLOCKS)`` steps. Per-step coordinates such as ``d/d log s_t`` are skewed
    (products of Gaussians: ``s_t eps_t`` times a term linear in ``eps_t``), and the
    t-statistic of a skewed mean over a few hundred keys has tails far heavier than the
    normal's, which a Bonferroni threshold over thousands of coordinates assumes; a sum
    over a block of steps is close to Gaussian. At small ``T`` (the smoke test's) the
    blocks are single steps, so a bias at one step is still caught there."""
    parts = [jnp.stack([jnp.asarray(v) for v in jax.tree.leaves(grad["model"])], -1)]
    for v in jax.tree.leaves(grad["guide"]):
        T = v.shape[-1]
        b = -(-T // BLOCKS)
        pad = jnp.zeros(v.shape[:-1] + (-T % b,), v.dtype)
        v = jnp.concatenate([v, pad], -1)
        parts.append(v.reshape(v.shape[:-1] + (-1, b)).sum(-1))
    return jnp.concatenate(parts, -1)


def check_runner(name, vg, ssm, params, y, keys, value_k=4.0, family_level=1e-3):
    """The mean of the runner's ELBO estimates over ``keys`` within ``value_k`` standard
    errors of the closed form, and the mean gradient within ``k`` standard errors of the
    closed form's gradient in every checked coordinate (:func:`checked_coordinates`;
    ``k`` Bonferroni-corrected over them at ``family_level``, at least 4). Returns the
    statistics; raises :class:`CheckFailed` otherwise."""
    vs, gs = jax.jit(jax.vmap(vg, in_axes=(None, 0, None)))(params, keys, y)
    vs = np.asarray(vs, np.float64)
    n = len(vs)
    exact_v = float(exact_elbo(ssm, params, y))
    exact_grad = jax.grad(lambda p: exact_elbo(ssm, p, y))(params)
    exact_g = np.asarray(checked_coordinates(exact_grad), np.float64)
    g = np.asarray(checked_coordinates(gs), np.float64)
    v_se = vs.std(ddof=1) / math.sqrt(n)
    v_z = abs(vs.mean() - exact_v) / v_se
    g_se = g.std(0, ddof=1) / math.sqrt(n)
    dev = np.abs(g.mean(0) - exact_g)
    floor = 1e-5 * (1 + np.abs(exact_g))  # coordinates with (near) zero variance
    g_z = dev / np.maximum(g_se, floor)
    k = max(4.0, float(-norm.ppf(family_level / (2 * g.shape[1]))))
    stats = {
        "exact_elbo": exact_v,
        "mean_elbo": float(vs.mean()),
        "elbo_se": float(v_se),
        "elbo_dev_over_se": float(v_z),
        "grad_max_dev_over_se": float(g_z.max()),
        "grad_threshold_se": k,
        "grad_coordinates_checked": int(g.shape[1]),
        "keys": n,
    }
    if not (np.isfinite(v_z) and v_z < value_k and np.all(np.isfinite(g_z)) and g_z.max() < k):
        raise CheckFailed(f"{ssm.name}, runner {name}: {stats}")
    return stats


def make_runners(ssm: SSM, T: int, params0, y, numpyro: bool = True):
    """``{name: vg}``, each ``vg(params, key, y) -> (elbo estimate, gradient)`` in the
    layout of ``params0``, plus NumPyro's SVI (or ``None``)."""
    vgs = {
        "hand_scan": hand_vg(hand_scan_elbo, ssm),
        "hand_vec": hand_vg(hand_vec_elbo, ssm),
        "genvi": make_genvi_vg(ssm, T),
    }
    svi = None
    if numpyro:
        made = make_numpyro(ssm, params0, y)
        if made is not None:
            svi, vgs["numpyro"] = made
    return vgs, svi


def check_all(ssm: SSM, T: int, check_keys: int = 200, numpyro: bool = True, seed: int = 0):
    """Build the runners at ``T`` and check each one; returns ``(vgs, svi, params, y,
    stats)``."""
    y = simulate_data(ssm, jax.random.key(seed), T)
    params = init_params(ssm, y)
    vgs, svi = make_runners(ssm, T, params, y, numpyro)
    keys = jax.random.split(jax.random.key(seed + 1), check_keys)
    stats = {name: check_runner(name, vg, ssm, params, y, keys) for name, vg in vgs.items()}
    return vgs, svi, params, y, stats


# ---------------------------------------------------------------- timing
def block(tree):
    jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)
    return tree


def make_step(vg, opt):
    @jax.jit
    def step(params, state, key, y):
        v, g = vg(params, key, y)
        upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
        return optax.apply_updates(params, upd), state, v

    return step


def time_runners(vgs, svi, params0, y, rounds, steps):
    opt = optax.adam(LR)
    keys = jax.random.split(jax.random.key(7), steps)
    first_call, blocks = {}, {}
    for name, vg in vgs.items():
        if name == "numpyro":
            assert svi is not None
            svi_state = svi.init(jax.random.key(3), y)
            update = jax.jit(svi.update)
            t = time.perf_counter()
            svi_state, _ = block(update(svi_state, y))
            first_call[name] = time.perf_counter() - t
            holder = {"s": svi_state}

            def run_numpyro(update=update, holder=holder):
                s = holder["s"]
                for _ in keys:
                    s, _ = update(s, y)
                holder["s"] = block(s)

            blocks[name] = run_numpyro
            continue
        step = make_step(vg, opt)
        st = {"p": params0, "s": opt.init(params0)}
        t = time.perf_counter()
        st["p"], st["s"], _ = block(step(st["p"], st["s"], keys[0], y))
        first_call[name] = time.perf_counter() - t

        def run(step=step, st=st):
            p, s = st["p"], st["s"]
            for k in keys:
                p, s, _ = step(p, s, k, y)
            st["p"], st["s"] = block((p, s))

        blocks[name] = run
    for run in blocks.values():  # warm-up
        run()
    times = {name: [] for name in blocks}
    order = list(blocks)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            t = time.perf_counter()
            blocks[name]()
            times[name].append((time.perf_counter() - t) / steps)
    return {n: statistics.median(ts) for n, ts in times.items()}, first_call


def table(results):
    lines = [
        "| model | T | runner | step ms | / hand_scan | / hand_vec | first call s "
        "| first / hand_scan | ELBO dev/SE | grad max dev/SE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        med, fc, chk = res["median_step_ms"], res["first_call_s"], res["check"]
        for name in med:
            lines.append(
                f"| {res['model']} | {res['T']} | {name} | {med[name]:.3f} "
                f"| {med[name] / med['hand_scan']:.2f} | {med[name] / med['hand_vec']:.2f} "
                f"| {fc[name]:.2f} | {fc[name] / fc['hand_scan']:.2f} "
                f"| {chk[name]['elbo_dev_over_se']:.2f} "
                f"| {chk[name]['grad_max_dev_over_se']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--check-keys", type=int, default=200, help="keys for the checks")
    ap.add_argument("--no-numpyro", action="store_true")
    ap.add_argument("--quick", action="store_true", help="T = 50, 2 rounds of 5 steps")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.T, args.rounds, args.steps = [50], 2, 5

    results = []
    for model_name in args.models:
        ssm = MODELS[model_name]
        for T in args.T:
            vgs, svi, params, y, stats = check_all(
                ssm, T, args.check_keys, numpyro=not args.no_numpyro
            )
            med, fc = time_runners(vgs, svi, params, y, args.rounds, args.steps)
            results.append(
                {
                    "model": model_name,
                    "T": T,
                    "median_step_ms": {n: 1e3 * v for n, v in med.items()},
                    "first_call_s": fc,
                    "ratio_over_hand_scan": {n: v / med["hand_scan"] for n, v in med.items()},
                    "ratio_over_hand_vec": {n: v / med["hand_vec"] for n, v in med.items()},
                    "first_call_ratio_over_hand_scan": {
                        n: v / fc["hand_scan"] for n, v in fc.items()
                    },
                    "check": stats,
                }
            )
    out = {
        "device": str(jax.devices()[0]),
        "rounds": args.rounds,
        "steps": args.steps,
        "numpyro_guide": "numpyro.contrib.control_flow.scan over (m_t, log s_t)",
        "first_call": "compile + first step; NumPyro: the first jitted svi.update (not svi.init)",
        "results": results,
    }
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
