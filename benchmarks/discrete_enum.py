"""One gradient step of a Gaussian mixture with discrete assignments: genvi (ENUM,
REINFORCE, REINFORCE + baseline) vs the exact ELBO hand-written in JAX vs NumPyro.

The model: K = 4 components in D = 2 dimensions, N points (default 1024, ``--points``)
drawn from a fixed seed, per-point assignments ``c_i ~ Categorical(softmax(w))`` and
``x_i ~ N(mu_{c_i}, 0.5^2 I)``; the model's parameters are the means ``mu`` and the
mixture logits ``w``. The guide is amortized,
``q(c_i | x_i) = Categorical(softmax(MLP(x_i)))`` with an MLP 2-32-K. The objective is
the ELBO ``sum_i E_{q(c_i|x_i)}[log p(x_i, c_i) - log q(c_i | x_i)]``.

Each step is ``value_and_grad`` of the objective and an Adam update, jitted:

- ``hand``: the exact ELBO written in JAX, ``sum_i sum_k q_ik (log p(x_i, k) - log q_ik)``
  (the reference).
- ``genvi_enum``: the per-point ELBO as a ``gv.expectation`` whose guide draws ``c`` with
  ``gv.categorical.enum``, vmapped over the points; exact, so its gradient is checked
  against ``hand`` (rtol 1e-4) before timing.
- ``genvi_reinforce`` and ``genvi_baseline``: the same program with ``gv.categorical``
  (REINFORCE, the default for a discrete choice) and with
  ``gv.categorical.reinforce.with_baseline(b_i)``, ``b_i`` a running average of the
  point's ELBO estimates (0.9 / 0.1) carried in the training state.
- ``numpyro_enum``: NumPyro's ``TraceEnum_ELBO`` with the guide's site
  ``infer={"enumerate": "parallel"}`` (guide-side enumeration; exact, like ``hand``).
  Needs the optional ``funsor`` package; left out (and said so) without it.
- ``numpyro_tracegraph``: NumPyro's ``TraceGraph_ELBO``, the score-function estimator
  for the non-reparameterizable guide site (single sample, no baseline).

All runners are interleaved round by round in one process; the script prints the ratio
of median step times against ``hand`` and against NumPyro, first-call (compile) times,
and the variance of each gradient estimator at fixed parameters over ``--var-keys``
keys (with a bias check against the exact gradient), so speed and variance can be read
together.

    python benchmarks/discrete_enum.py [--rounds 15] [--steps 20] [--points 1024]
        [--var-keys 200] [--no-numpyro] [--json out.json]
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

K, D, H = 4, 2, 32
SIGMA = 0.5
TRUE_MEANS = jnp.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])


def make_data(key, n):
    kc, kx = jax.random.split(key)
    c = jax.random.categorical(kc, jnp.zeros(K), shape=(n,))
    return TRUE_MEANS[c] + SIGMA * jax.random.normal(kx, (n, D))


def init_params(key):
    def dense(k, m, n):
        return {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}

    km, kh, ko = jax.random.split(key, 3)
    return {
        "model": {"means": jax.random.normal(km, (K, D)), "mix": jnp.zeros(K)},
        "guide": {"h": dense(kh, D, H), "out": dense(ko, H, K)},
    }


def guide_logits(gp, x):
    h = jnp.tanh(x @ gp["h"]["w"] + gp["h"]["b"])
    return h @ gp["out"]["w"] + gp["out"]["b"]


def normal_logpdf(x, mean):
    return jnp.sum(
        -0.5 * ((x - mean) / SIGMA) ** 2 - jnp.log(SIGMA) - 0.5 * jnp.log(2 * jnp.pi), -1
    )


# ---------------------------------------------------------------- hand-written JAX (exact)
def hand_elbo(params, xs):
    mp, gp = params["model"], params["guide"]
    log_q = jax.nn.log_softmax(guide_logits(gp, xs), -1)  # (N, K)
    log_joint = jax.nn.log_softmax(mp["mix"]) + normal_logpdf(xs[:, None, :], mp["means"])
    return jnp.sum(jnp.exp(log_q) * (log_joint - log_q))


# ---------------------------------------------------------------- genvi
@gv.gen
def point_model(mp):
    c = gv.categorical(mp["mix"]) @ "c"
    gv.normal(mp["means"][c], SIGMA) @ "x"


STRATEGIES = {
    "enum": lambda b: gv.categorical.enum,
    "reinforce": lambda b: gv.categorical,
    "baseline": lambda b: gv.categorical.reinforce.with_baseline(b),
}


def make_genvi_elbo(strategy):
    pick = STRATEGIES[strategy]

    @gv.gen
    def point_guide(gp, x, b):
        pick(b)(guide_logits(gp, x)) @ "c"

    @gv.expectation
    def point_elbo(key, params, x, b):
        tr = point_guide.simulate(key, params["guide"], x, b)
        log_p, _ = point_model.assess(tr.choices.merge({"x": x}), params["model"])
        return log_p - tr.score

    def per_point(params, key, xs, b):
        keys = jax.random.split(key, xs.shape[0])
        return jax.vmap(point_elbo.estimate, in_axes=(0, None, 0, 0))(keys, params, xs, b)

    def elbo(params, key, xs, b):
        return jnp.sum(per_point(params, key, xs, b))

    return elbo, per_point


# ---------------------------------------------------------------- steps
def make_steps(opt):
    def hand_step(params, state, b, key, xs):
        v, g = jax.value_and_grad(hand_elbo)(params, xs)
        upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
        return optax.apply_updates(params, upd), state, b, v

    steps = {"hand": jax.jit(hand_step)}
    for strategy in STRATEGIES:
        elbo, per_point = make_genvi_elbo(strategy)

        def step(params, state, b, key, xs, per_point=per_point):
            def f(p):
                vs = per_point(p, key, xs, b)
                return jnp.sum(vs), vs

            (v, vs), g = jax.value_and_grad(f, has_aux=True)(params)
            upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
            b = 0.9 * b + 0.1 * jax.lax.stop_gradient(vs)  # running per-point baseline
            return optax.apply_updates(params, upd), state, b, v

        steps[f"genvi_{strategy}"] = jax.jit(step)
    return steps


def make_numpyro(p0, lr):
    """``{name: (svi, objective description)}``; empty without numpyro."""
    try:
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO
    except ImportError:  # pragma: no cover
        return {}

    def nmodel(xs):
        means = numpyro.param("means", p0["model"]["means"])
        mix = numpyro.param("mix", p0["model"]["mix"])
        with numpyro.plate("data", xs.shape[0]):
            c = numpyro.sample("c", nd.Categorical(logits=mix))
            numpyro.sample("x", nd.Normal(means[c], SIGMA).to_event(1), obs=xs)

    def make_guide(enumerate_c):
        infer = {"enumerate": "parallel"} if enumerate_c else {}

        def nguide(xs):
            gp = numpyro.param("guide", p0["guide"])
            with numpyro.plate("data", xs.shape[0]):
                numpyro.sample("c", nd.Categorical(logits=guide_logits(gp, xs)), infer=infer)

        return nguide

    out = {
        "numpyro_tracegraph": (
            SVI(nmodel, make_guide(False), numpyro.optim.Adam(lr), TraceGraph_ELBO()),
            "TraceGraph_ELBO: single-sample score-function (REINFORCE) gradient for c, no baseline",
        )
    }
    try:
        import funsor  # noqa: F401  (TraceEnum_ELBO needs it)

        out["numpyro_enum"] = (
            SVI(nmodel, make_guide(True), numpyro.optim.Adam(lr), TraceEnum_ELBO()),
            "TraceEnum_ELBO with guide-side parallel enumeration of c: the exact ELBO",
        )
    except ImportError:
        pass
    return out


def numpyro_grad_fn(svi, p0):
    """The gradient of numpyro's ELBO estimate (the negated loss) at ``params``, in the
    same pytree layout as ``init_params``."""

    def grad(params, key, xs):
        pm = {"means": params["model"]["means"], "mix": params["model"]["mix"]}
        pm["guide"] = params["guide"]
        g = jax.grad(lambda p: -svi.loss.loss(key, p, svi.model, svi.guide, xs))(pm)
        return {"model": {"means": g["means"], "mix": g["mix"]}, "guide": g["guide"]}

    return grad


def block(tree):
    jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)
    return tree


def flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def variance_study(grad_fns, exact, keys):
    """Per estimator: the summed per-coordinate variance of its gradient over ``keys``
    (model and guide parameters separately), next to the squared norm of the exact
    gradient for scale, and the largest deviation of the mean from the exact gradient in
    standard errors (0 where the standard error is at float-rounding level, as for the
    exact estimators)."""
    n = len(keys)
    out = {}
    for name, fn in grad_fns.items():
        fn = jax.jit(fn)
        gs = [fn(k) for k in keys]
        stats = {}
        for part in ("model", "guide"):
            g = np.stack([np.asarray(flat(x[part]), np.float64) for x in gs])
            e = np.asarray(flat(exact[part]), np.float64)
            se = g.std(0, ddof=1) / np.sqrt(n)
            dev = np.abs(g.mean(0) - e)
            z = np.where(se > 1e-6 * (1 + np.abs(e)), dev / np.maximum(se, 1e-30), 0.0)
            stats[f"var_{part}"] = float(g.var(0, ddof=1).sum())
            stats[f"max_bias_over_se_{part}"] = float(z.max())
            stats[f"max_abs_dev_{part}"] = float(dev.max())
            stats[f"exact_sq_norm_{part}"] = float(np.sum(e**2))  # scale for var_{part}
        out[name] = stats
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--points", type=int, default=1024, help="N, the number of data points")
    ap.add_argument("--var-keys", type=int, default=200, help="keys for the variance study")
    ap.add_argument("--no-numpyro", action="store_true")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    xs = make_data(jax.random.key(1), args.points)
    p0 = init_params(jax.random.key(0))
    lr = 1e-2
    opt = optax.adam(lr)
    keys = jax.random.split(jax.random.key(2), args.steps)

    # Sanity first: genvi's enumerated ELBO is exact, so its value and gradient equal the
    # hand-written enumeration's, on any key.
    enum_elbo, _ = make_genvi_elbo("enum")
    b0 = jnp.zeros(args.points)
    v_hand, g_hand = jax.jit(jax.value_and_grad(hand_elbo))(p0, xs)
    v_enum, g_enum = jax.jit(jax.value_and_grad(enum_elbo))(p0, keys[0], xs, b0)
    same = bool(np.allclose(v_hand, v_enum, rtol=1e-4)) and all(
        np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(a))))
        for a, b in zip(jax.tree.leaves(g_hand), jax.tree.leaves(g_enum), strict=True)
    )
    if not same:
        raise SystemExit("genvi's enumerated ELBO gradient differs from the exact one")

    objectives = {
        "hand": "exact ELBO, sum over k of q_ik (log p(x_i, k) - log q_ik), hand-written JAX",
        "genvi_enum": "exact ELBO: gv.categorical.enum per point (vmapped gv.expectation)",
        "genvi_reinforce": "single-sample ELBO, score-function gradient for c (gv.categorical)",
        "genvi_baseline": "single-sample ELBO, score-function gradient with a per-point "
        "running-average baseline (gv.categorical.reinforce.with_baseline(b_i))",
    }

    steps = make_steps(opt)
    state = {name: (p0, opt.init(p0), b0) for name in steps}
    compile_s = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        block(fn(*state[name], keys[0], xs))
        compile_s[name] = time.perf_counter() - t

    runners = {}
    for name, fn in steps.items():

        def run_block(fn=fn, name=name):
            p, s, b = state[name]
            for k in keys:
                p, s, b, _ = fn(p, s, b, k, xs)
            block(p)
            state[name] = (p, s, b)

        runners[name] = run_block

    nsvi = {} if args.no_numpyro else make_numpyro(p0, lr)
    for name, (svi, description) in nsvi.items():
        objectives[name] = description
        t = time.perf_counter()
        svi_state = svi.init(jax.random.key(3), xs)
        upd = jax.jit(svi.update)
        block(upd(svi_state, xs)[0])
        compile_s[name] = time.perf_counter() - t
        holder = {"s": svi_state}

        def run_numpyro(upd=upd, holder=holder):
            s = holder["s"]
            for _ in keys:
                s, _ = upd(s, xs)
            block(s)
            holder["s"] = s

        runners[name] = run_numpyro
    if not args.no_numpyro and "numpyro_enum" not in nsvi:
        objectives["numpyro_enum"] = "not run: TraceEnum_ELBO needs the funsor package"

    times = {name: [] for name in runners}
    for r in range(args.rounds):
        order = list(runners)
        order = order[r % len(order) :] + order[: r % len(order)]
        for name in order:
            t = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - t) / args.steps)

    # Gradient variance at p0. The baseline is b_i = the mean of 32 ELBO estimates of
    # point i from keys independent of the studied ones (what the running average tends to).
    _, rf_per_point = make_genvi_elbo("reinforce")
    bkeys = jax.random.split(jax.random.key(4), 32)
    b_star = jnp.mean(jax.vmap(lambda k: rf_per_point(p0, k, xs, b0))(bkeys), 0)
    grad_fns = {"hand": lambda k: jax.grad(hand_elbo)(p0, xs)}
    for strategy in STRATEGIES:
        elbo, _ = make_genvi_elbo(strategy)
        b = b_star if strategy == "baseline" else b0
        grad_fns[f"genvi_{strategy}"] = lambda k, elbo=elbo, b=b: jax.grad(elbo)(p0, k, xs, b)
    for name, (svi, _) in nsvi.items():
        g = numpyro_grad_fn(svi, p0)
        grad_fns[name] = lambda k, g=g: g(p0, k, xs)
    var_keys = list(jax.random.split(jax.random.key(5), args.var_keys))
    variance = variance_study(grad_fns, g_hand, var_keys)

    med = {n: statistics.median(ts) for n, ts in times.items()}
    out = {
        "device": str(jax.devices()[0]),
        "problem": {"K": K, "D": D, "N": args.points, "guide": f"MLP {D}-{H}-{K}", "sigma": SIGMA},
        "objectives": objectives,
        "median_step_ms": {n: 1e3 * v for n, v in med.items()},
        "ratio_over_hand": {n: med[n] / med["hand"] for n in med if n != "hand"},
        "compile_s": compile_s,
        "compile_ratio_over_hand": {
            n: compile_s[n] / compile_s["hand"] for n in compile_s if n != "hand"
        },
        "gradient_variance": variance,
        "variance_keys": args.var_keys,
        "enum_same_value_and_gradient_as_hand": same,
    }
    vs = {}
    if "numpyro_enum" in med:
        vs["genvi_enum_over_numpyro_enum"] = med["genvi_enum"] / med["numpyro_enum"]
        vs["hand_over_numpyro_enum"] = med["hand"] / med["numpyro_enum"]
    if "numpyro_tracegraph" in med:
        for s in ("reinforce", "baseline"):
            vs[f"genvi_{s}_over_numpyro_tracegraph"] = med[f"genvi_{s}"] / med["numpyro_tracegraph"]
    if vs:
        out["ratio_vs_numpyro"] = vs
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
