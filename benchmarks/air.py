"""Attend-Infer-Repeat (issue 9): seconds per training epoch, genvi against Pyro.

The model and guide are ``genvi/models/air.py`` and, in Pyro, ``benchmarks/_air_pyro.py``
(the same architecture, weights loaded from the same genvi parameters). An *epoch* here
is ``--batches`` minibatches of 64 canvases of ``genvi.data.multi_digits`` (one
optimizer step each: the objective's gradient estimate and an Adam update). Runners
(``--runners``; all by default):

==========================  =================================================  =====================================
runner                      genvi                                              Pyro
==========================  =================================================  =====================================
``reinforce``               ``gv.flip.reinforce`` presence, ELBO               ``TraceGraph_ELBO``
``baseline``                ``.reinforce.with_baseline(b)``, learned ``b``      ``TraceGraph_ELBO`` + ``baseline_value``
``enum``                    ``gv.flip.enum``, ELBO                             ``TraceEnum_ELBO``, parallel enumeration
``iwae_reinforce``          REINFORCE, IWAE with 2 particles                   IWAE(2) with REINFORCE on Pyro traces
``mvd``                     ``gv.flip.mvd``, ELBO                              (not expressible)
``hybrid``                  ENUM at step 0, MVD after, ELBO                    (not expressible)
``iwae_mvd``                MVD, IWAE with 2 particles                         (not expressible)
==========================  =================================================  =====================================

All runners live in one process and are interleaved: every round times one epoch of each,
in an order that rotates between rounds. The script prints, per runner, the median epoch
time and the ratio Pyro / genvi, and the first-epoch (compile) times, as JSON (``--json``
writes it too). Before timing it checks that both systems compute the same thing: on
traces drawn by genvi's guide, the model's log joint and the guide's log density agree
between genvi and Pyro (within 0.01 nats, float32 sums of 2500 pixel terms).

    python benchmarks/air.py [--rounds 5] [--batches 10] [--runners enum,reinforce] [--json out.json]

Pyro needs the ``bench`` extra (``pip install -e ".[bench]"``: pyro-ppl and CPU torch).
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
import optax

import genvi.training
from genvi import data
from genvi.models import air

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

B = 64
GENVI = {
    "reinforce": ("reinforce", "elbo"),
    "baseline": ("baseline", "elbo"),
    "enum": ("enum", "elbo"),
    "iwae_reinforce": ("reinforce", "iwae"),
    "mvd": ("mvd", "elbo"),
    "hybrid": ("hybrid", "elbo"),
    "iwae_mvd": ("mvd", "iwae"),
}
PYRO = {
    "reinforce": "reinforce",
    "baseline": "reinforce_baseline",
    "enum": "enum",
    "iwae_reinforce": "iwae_reinforce",
}
LR = 1e-4


def numpy_params(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float32), params)


class GenviRunner:
    """One jitted training step (value and gradient estimate, Adam update), in a loop."""

    def __init__(self, cfg: air.AIR, params, estimator: str, objective: str):
        f = cfg.batch_objective(estimator, objective)
        opt = optax.adam(LR)
        self.step_fn = jax.jit(genvi.training.make_step(f, opt))
        self.state = genvi.training.init(params, opt, jax.random.key(0))

    def step(self, batch) -> float:
        self.state, info = self.step_fn(self.state, batch)
        return float(info.objective)


def genvi_trace_arrays(cfg: air.AIR, params, x, key):
    """Traces of genvi's guide on the images ``x``, as Pyro's arrays."""
    guide = cfg.guide("reinforce")
    gp = cfg.guide_params(params)

    def one(k, xi):
        tr = guide.simulate(k, gp, xi)
        where, pres = air.steps_of(tr.choices, cfg.steps)
        what = []
        for t in range(cfg.steps):
            a = (f"object{t}", "what")
            w = tr.choices[a] if tr.choices.has(a) else jnp.zeros(cfg.z_what)
            what.append(jnp.where(pres[t] > 0, w, 0.0))
        cm = tr.choices.merge({"x": xi})
        logp, _ = cfg.model.assess(cm, params["decoder"])
        return pres, where, jnp.stack(what), logp, tr.score

    keys = jax.random.split(key, x.shape[0])
    return [np.asarray(a) for a in jax.jit(jax.vmap(one))(keys, jnp.asarray(x))]


def check_same(cfg: air.AIR, params, x) -> dict:
    import _air_pyro

    pres, where, what, logp, logq = genvi_trace_arrays(cfg, params, x, jax.random.key(11))
    p_logp, p_logq = _air_pyro.log_joint_and_guide(numpy_params(params), x, pres, where, what)
    # float32 sums of 2500 pixel terms in two systems: compare absolutely (torch also
    # scores an absent step's z_pres = 0 under Bernoulli(0) as log(1 - eps32))
    diff_p, diff_q = np.max(np.abs(logp - p_logp)), np.max(np.abs(logq - p_logq))
    counts = np.bincount(pres.sum(1).astype(int), minlength=cfg.steps + 1).tolist()
    report = {"max_abs_diff_logp": float(diff_p), "max_abs_diff_logq": float(diff_q)}
    report["trace_counts"] = counts
    if diff_p > 1e-2 or diff_q > 1e-2:
        print(json.dumps(report), file=sys.stderr)
        raise SystemExit("genvi and Pyro disagree on the densities of the same traces")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10, help="minibatches of 64 per epoch")
    ap.add_argument("--runners", default=",".join(GENVI))
    ap.add_argument("--no-pyro", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = [r for r in runners if r not in GENVI]
    if unknown:
        ap.error(f"unknown runner(s) {unknown}; choose from {list(GENVI)}")

    cfg = air.AIR()
    ds = data.multi_digits(n_train=B * args.batches, n_test=64, seed=0)
    batches = [ds.train[i * B : (i + 1) * B] for i in range(args.batches)]
    params = cfg.init_params(jax.random.key(0))
    result: dict = {
        "batch": B,
        "batches_per_epoch": args.batches,
        "rounds": args.rounds,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }

    systems: dict = {}
    for r in runners:
        est, obj = GENVI[r]
        systems[f"genvi_{r}"] = GenviRunner(cfg, params, est, obj)
    if not args.no_pyro:
        import _air_pyro
        import torch

        _air_pyro.PRES_PRIOR = cfg.pres_prior
        _air_pyro.MAX_LOGIT = cfg.max_logit
        result["torch"] = torch.__version__
        result["same_densities"] = check_same(cfg, params, ds.test)
        for r in runners:
            if r in PYRO:
                systems[f"pyro_{r}"] = _air_pyro.PyroAIR(
                    numpy_params(params),
                    estimator=PYRO[r],
                    particles=2 if r.startswith("iwae") else 1,
                    lr=LR,
                )

    def epoch(runner) -> float:
        t0 = time.perf_counter()
        for b in batches:
            v = runner.step(b)
        if not np.isfinite(v):
            raise SystemExit(f"non-finite objective {v}")
        return time.perf_counter() - t0

    first = {name: epoch(r) for name, r in systems.items()}
    times: dict = {name: [] for name in systems}
    names = list(systems)
    for k in range(args.rounds):
        order = names[k % len(names) :] + names[: k % len(names)]
        for name in order:
            times[name].append(epoch(systems[name]))
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    result["epoch_seconds_median"] = median
    result["first_epoch_seconds"] = first
    ratios = {}
    for r in runners:
        if f"pyro_{r}" in median:
            ratios[r] = median[f"pyro_{r}"] / median[f"genvi_{r}"]
    result["pyro_over_genvi"] = ratios
    result["genvi_over_genvi_reinforce"] = {
        r: median[f"genvi_{r}"] / median["genvi_reinforce"]
        for r in runners
        if "genvi_reinforce" in median
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
