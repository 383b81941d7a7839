"""One training step of a K-state HMM with Gaussian emissions, the discrete chain summed
out exactly: the hand-written forward algorithm in JAX vs genvi's ``gv.sum_out`` vs
NumPyro's ``TraceEnum_ELBO`` over a ``contrib.control_flow.scan`` model.

The model: ``z_1 ~ Cat(softmax(a[K]))``, ``z_t | z_{t-1} ~ Cat(softmax(a[z_{t-1}]))``,
``y_t ~ N(mu[z_t], exp(log_sigma))``; the transition logits ``a`` have K + 1 rows, row K
being the initial distribution (a "start" state, the chain's initial carry). The
parameters ``a``, ``mu``, ``log_sigma`` are learned by maximizing the exact
``log p(y) = log sum_z p(y, z)`` (forward algorithm, ``O(T K^2)``). Data simulated from
fixed true parameters with a fixed seed.

Each step is ``value_and_grad`` of ``log p(y)`` and an Adam update, jitted:

- ``hand``: the log-space forward recursion, ``lax.scan`` with ``logsumexp``.
- ``genvi``: ``gv.sum_out(gv.scan(step), "z").assess({"y": ys}, K, None)``.
- ``numpyro``: ``svi.update`` of ``SVI(model, empty guide, Adam, TraceEnum_ELBO())``, the
  model's ``z`` site ``infer={"enumerate": "parallel"}`` inside ``scan`` (needs
  ``funsor``; left out, and said so, without it). Its loss is ``-log p(y)``.

Before timing, every runner's value and gradient must equal ``hand``'s (rtol 1e-4), and
``hand`` must equal brute-force enumeration of all K^T paths at T = 5.

    python benchmarks/hmm.py [--K 3] [--T 100 1000] [--rounds 10] [--steps 20]
        [--no-numpyro] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import genvi as gv

RTOL = 1e-4


class CheckFailed(Exception):
    pass


def true_params(k):
    a = 2.0 * jnp.eye(k + 1, k)  # sticky transitions; row k (start) is uniform
    return {"a": a, "mu": jnp.linspace(-2.0, 2.0, k), "log_sigma": jnp.log(0.5)}


def init_params(k):
    return {
        "a": jnp.zeros((k + 1, k)),
        "mu": jnp.linspace(-1.0, 1.0, k),
        "log_sigma": jnp.asarray(0.0),
    }


def simulate(key, params, t):
    k = params["mu"].shape[0]
    log_a = jax.nn.log_softmax(params["a"], -1)

    def step(z_prev, key):
        kz, ky = jax.random.split(key)
        z = jax.random.categorical(kz, log_a[z_prev])
        y = params["mu"][z] + jnp.exp(params["log_sigma"]) * jax.random.normal(ky)
        return z, y

    _, ys = jax.lax.scan(step, jnp.asarray(k), jax.random.split(key, t))
    return ys


# ---------------------------------------------------------------- hand-written forward
def hand_logp(params, ys):
    k = params["mu"].shape[0]
    log_a = jax.nn.log_softmax(params["a"], -1)
    emit = norm.logpdf(ys[:, None], params["mu"], jnp.exp(params["log_sigma"]))  # [T, K]
    alpha0 = log_a[k] + emit[0]

    def step(alpha, e):
        return logsumexp(alpha[:, None] + log_a[:k], axis=0) + e, None

    alpha, _ = jax.lax.scan(step, alpha0, emit[1:])
    return logsumexp(alpha)


def brute_logp(params, ys):
    k = params["mu"].shape[0]
    log_a = jax.nn.log_softmax(params["a"], -1)
    paths = jnp.array(list(itertools.product(range(k), repeat=len(ys))))
    prev = jnp.concatenate([jnp.full((paths.shape[0], 1), k), paths[:, :-1]], axis=1)
    lp = log_a[prev, paths] + norm.logpdf(ys, params["mu"][paths], jnp.exp(params["log_sigma"]))
    return logsumexp(jnp.sum(lp, axis=1))


# ---------------------------------------------------------------- genvi
def genvi_logp(params, ys):
    k = params["mu"].shape[0]
    return genvi_chain_len(params, ys.shape[0]).assess({"y": ys}, k, None)[0]


def genvi_chain_len(params, t):
    log_a = jax.nn.log_softmax(params["a"], -1)
    mu, sd = params["mu"], jnp.exp(params["log_sigma"])

    @gv.gen
    def step(z_prev, _):
        z = gv.categorical(log_a[z_prev]) @ "z"
        gv.normal(mu[z], sd) @ "y"
        return z, None

    return gv.sum_out(gv.scan(step, length=t), "z")


# ---------------------------------------------------------------- numpyro
def make_numpyro(p0, lr):
    """``(svi, loss_fn)`` or ``None`` with the reason."""
    try:
        import funsor  # noqa: F401  (TraceEnum_ELBO needs it)
        import numpyro
        import numpyro.distributions as nd
        from numpyro.contrib.control_flow import scan
        from numpyro.infer import SVI, TraceEnum_ELBO
    except ImportError as e:
        return None, f"not run: {e}"

    k = int(p0["mu"].shape[0])

    def model(ys):
        a = cast(jax.Array, numpyro.param("a", p0["a"]))
        mu = cast(jax.Array, numpyro.param("mu", p0["mu"]))
        log_sigma = cast(jax.Array, numpyro.param("log_sigma", p0["log_sigma"]))
        log_a = jax.nn.log_softmax(a, -1)
        sd = jnp.exp(log_sigma)

        def step(z_prev, y):
            z = cast(
                jax.Array,
                numpyro.sample(
                    "z",
                    nd.Categorical(logits=log_a[z_prev]),  # pyright: ignore[reportArgumentType]
                    infer={"enumerate": "parallel"},
                ),
            )
            numpyro.sample("y", nd.Normal(mu[z], sd), obs=y)
            return z, None

        # z_1 outside the scan (from the start row), the rest in it: numpyro's scan
        # enumeration gave a wrong log p(y) with the start state as the initial carry
        z1 = cast(
            jax.Array,
            numpyro.sample(
                "z1",
                nd.Categorical(logits=log_a[k]),  # pyright: ignore[reportArgumentType]
                infer={"enumerate": "parallel"},
            ),
        )
        numpyro.sample("y1", nd.Normal(mu[z1], sd), obs=ys[0])
        scan(step, z1, ys[1:])

    def guide(ys):  # every latent is summed out: no sample sites
        pass

    svi = SVI(model, guide, numpyro.optim.Adam(lr), TraceEnum_ELBO())

    def logp(params, ys):
        return -svi.loss.loss(jax.random.key(0), params, model, guide, ys)

    return (svi, logp), "TraceEnum_ELBO, parallel enumeration of z in scan, empty guide"


# ---------------------------------------------------------------- checks
def check_close(name, got, want):
    v, g = got
    v0, g0 = want
    ok = bool(np.allclose(v, v0, rtol=RTOL)) and all(
        np.allclose(a, b, rtol=RTOL, atol=RTOL * float(jnp.max(jnp.abs(b))) + 1e-8)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0), strict=True)
    )
    if not ok:
        raise CheckFailed(f"{name}: value/gradient {v} {g} differs from hand's {v0} {g0}")


def check_all(k, t, numpyro=True):
    """Runs the self-checks; returns ``{runner: logp function}`` of the runners that pass."""
    p_true = true_params(k)
    ys5 = simulate(jax.random.key(7), p_true, 5)
    p = init_params(k)
    p = {**p, "a": p["a"] + 0.3 * jax.random.normal(jax.random.key(8), p["a"].shape)}
    check_close(
        "hand vs brute force (T=5)",
        jax.value_and_grad(hand_logp)(p, ys5),
        jax.value_and_grad(brute_logp)(p, ys5),
    )
    ys = simulate(jax.random.key(1), p_true, t)
    want = jax.jit(jax.value_and_grad(hand_logp))(p, ys)
    fns = {"hand": hand_logp, "genvi": genvi_logp}
    notes = {}
    if numpyro:
        nres, note = make_numpyro(p, 1e-2)
        notes["numpyro"] = note
        if nres is not None:
            fns["numpyro"] = nres[1]
    for name, fn in fns.items():
        got = jax.jit(jax.value_and_grad(fn))(p, ys)
        if name != "numpyro":
            check_close(name, got, want)
            continue
        try:  # a numpyro mismatch leaves numpyro out of the timing, and says so
            check_close(name, got, want)
        except CheckFailed:
            notes["numpyro"] = (
                f"not timed: its log p(y) {float(got[0]):.4f} differs from hand's "
                f"{float(want[0]):.4f} at T={t} (TraceEnum_ELBO over contrib scan)"
            )
    return fns, notes


def block(tree):
    jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)
    return tree


def bench(k, t, rounds, steps, numpyro, lr=1e-2):
    ys = simulate(jax.random.key(1), true_params(k), t)
    p0 = init_params(k)
    opt = optax.adam(lr)

    def make_step(logp):
        def step(params, state):
            v, g = jax.value_and_grad(logp)(params, ys)
            upd, state = opt.update(jax.tree.map(jnp.negative, g), state, params)
            return optax.apply_updates(params, upd), state, v

        return jax.jit(step)

    runners, compile_s = {}, {}
    for name, logp in (("hand", hand_logp), ("genvi", genvi_logp)):
        fn = make_step(logp)
        t0 = time.perf_counter()
        holder = {"s": fn(p0, opt.init(p0))[:2]}
        block(holder["s"])
        compile_s[name] = time.perf_counter() - t0
        for _ in range(3):  # the optimizer state's dtypes settle after two retraces
            holder["s"] = block(fn(*holder["s"])[:2])

        def run(fn=fn, holder=holder):
            s = holder["s"]
            for _ in range(steps):
                s = fn(*s)[:2]
            holder["s"] = block(s)

        runners[name] = run
    if numpyro:
        nres, _ = make_numpyro(p0, lr)
        if nres is not None:
            svi = nres[0]
            t0 = time.perf_counter()
            s = svi.init(jax.random.key(3), ys)
            upd = jax.jit(svi.update)
            holder = {"s": block(upd(s, ys)[0])}
            compile_s["numpyro"] = time.perf_counter() - t0
            for _ in range(3):
                holder["s"] = block(upd(holder["s"], ys)[0])

            def run_n(upd=upd, holder=holder):
                s = holder["s"]
                for _ in range(steps):
                    s, _ = upd(s, ys)
                holder["s"] = block(s)

            runners["numpyro"] = run_n
    times = {n: [] for n in runners}
    for r in range(rounds):
        order = list(runners)
        order = order[r % len(order) :] + order[: r % len(order)]
        for n in order:
            t0 = time.perf_counter()
            runners[n]()
            times[n].append((time.perf_counter() - t0) / steps)
    med = {n: statistics.median(v) for n, v in times.items()}
    out = {
        "median_step_ms": {n: 1e3 * v for n, v in med.items()},
        "ratio_over_hand": {n: med[n] / med["hand"] for n in med},
        "compile_s": compile_s,
        "compile_ratio_over_hand": {n: compile_s[n] / compile_s["hand"] for n in compile_s},
    }
    if "numpyro" in med:
        out["genvi_over_numpyro"] = med["genvi"] / med["numpyro"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-numpyro", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.T, args.rounds, args.steps = [20], 2, 2
    _, notes = check_all(args.K, min(args.T), numpyro=not args.no_numpyro)
    numpyro_ok = not args.no_numpyro and notes.get("numpyro", "").startswith("TraceEnum")
    out = {
        "device": str(jax.devices()[0]),
        "K": args.K,
        "checks": "hand = brute force (T=5); genvi = hand (rtol 1e-4)",
        "notes": notes,
    }
    rows = []
    for t in args.T:
        _, n_t = check_all(args.K, t, numpyro=numpyro_ok)
        ok_t = numpyro_ok and n_t.get("numpyro", "").startswith("TraceEnum")
        r = bench(args.K, t, args.rounds, args.steps, ok_t)
        out[f"T={t}"] = r
        for n, ms in r["median_step_ms"].items():
            rows.append(
                f"| {t} | {n} | {ms:.3f} | {r['ratio_over_hand'][n]:.2f} | "
                f"{r['compile_s'][n]:.2f} | {r['compile_ratio_over_hand'][n]:.2f} |"
            )
    print("| T | runner | step ms | / hand | first call s | / hand |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
