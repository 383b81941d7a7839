"""Attend-Infer-Repeat: count accuracy and objective against wall-clock time, per
presence estimator (the programmable-VI paper's Figure 7, on CPU).

For each estimator of ``genvi.models.air.ESTIMATORS`` and each seed, trains the default
``genvi.models.air.AIR()`` (as ``genvi air`` does) on ``genvi.data.multi_digits()`` with Adam and
minibatches of 64 for ``--seconds`` of training time (compilation and evaluation are not
counted), and every ``--eval-every`` steps records the training objective (the ELBO
estimate, averaged over those steps) and the held-out count accuracy (on ``--eval``
held-out canvases, presence drawn from the guide). Runs are sequential, one process, so
each has the machine to itself as far as this script is concerned.

    python benchmarks/air_convergence.py [--estimators enum,mvd] [--seeds 3] [--seconds 150] \
        [--scale-sd 0.1] [--json air_convergence.json] [--plot docs/images/air_convergence.png]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import optax

import genvi.training
from genvi import data
from genvi.models import air

B = 64
LR = 1e-3  # genvi air's default


def run(cfg: air.AIR, ds, estimator: str, seed: int, seconds: float, eval_every: int, n_eval):
    params = cfg.init_params(jax.random.key(seed))
    opt = optax.adam(LR)
    step = jax.jit(genvi.training.make_step(cfg.batch_objective(estimator), opt))
    state = genvi.training.init(params, opt, jax.random.key(seed + 1000))
    rng = np.random.default_rng(seed)
    test, counts = ds.test[:n_eval], ds.test_counts[:n_eval]

    def batch():
        return ds.train[rng.integers(0, ds.train.shape[0], B)]

    t0 = time.perf_counter()
    state, info = step(state, batch())
    jax.block_until_ready(info.objective)
    compile_s = time.perf_counter() - t0
    curve = {"seconds": [], "steps": [], "objective": [], "accuracy": []}
    elapsed, steps, recent = 0.0, 1, []
    while elapsed < seconds:
        t = time.perf_counter()
        for _ in range(eval_every):
            state, info = step(state, batch())
            recent.append(info.objective)
        jax.block_until_ready(state.params)
        elapsed += time.perf_counter() - t
        steps += eval_every
        n, _, _ = cfg.infer(jax.random.key(7), state.params, test)
        curve["seconds"].append(elapsed)
        curve["steps"].append(steps)
        curve["objective"].append(float(np.mean(np.asarray(recent))))
        curve["accuracy"].append(float(np.mean(np.asarray(n) == counts)))
        recent = []
    return {"compile_seconds": compile_s, "seconds_per_step": elapsed / (steps - 1), **curve}


def plot(results: dict, path: str, note: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (est, runs) in enumerate(results.items()):
        colour = f"C{i}"
        for j, r in enumerate(runs):
            label = est if j == 0 else None
            axes[0].plot(r["seconds"], r["accuracy"], color=colour, alpha=0.8, label=label)
            axes[1].plot(r["seconds"], r["objective"], color=colour, alpha=0.8, label=label)
    axes[0].set_ylabel("held-out count accuracy")
    axes[1].set_ylabel("training ELBO per image (nats)")
    for ax in axes:
        ax.set_xlabel("training time (s, CPU, compilation excluded)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="presence estimator")
    fig.suptitle("AIR on multi-digit canvases: one line per seed" + note)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--estimators", default=",".join(air.ESTIMATORS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval", type=int, default=500, help="held-out canvases for the accuracy")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument(
        "--scale-sd",
        type=float,
        default=None,
        help="standard deviation of the prior of an object's window scale (default: AIR's, "
        "0.2); 0.1 makes one big window covering two digits cost more than a second object",
    )
    args = ap.parse_args(argv)
    if args.scale_sd is not None and not args.scale_sd > 0:
        ap.error(f"--scale-sd must be positive, got {args.scale_sd}")
    cfg = air.AIR() if args.scale_sd is None else air.AIR(where_scale=(args.scale_sd, 1.0, 1.0))
    ds = data.multi_digits()
    results: dict = {}
    for est in [e.strip() for e in args.estimators.split(",") if e.strip()]:
        results[est] = []
        for seed in range(args.seeds):
            r = run(cfg, ds, est, seed, args.seconds, args.eval_every, args.eval)
            results[est].append(r)
            print(
                f"{est:>10} seed {seed}: {r['steps'][-1]} steps, "
                f"{1000 * r['seconds_per_step']:.0f} ms/step, accuracy {r['accuracy'][-1]:.3f}, "
                f"objective {r['objective'][-1]:.1f}",
                flush=True,
            )
    out = {"config": str(cfg), "lr": LR, "batch": B, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)
    if args.plot:
        note = "" if args.scale_sd is None else f" (window scale prior sd {args.scale_sd})"
        plot(results, args.plot, note)


if __name__ == "__main__":
    main()
