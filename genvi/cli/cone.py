"""``genvi cone``: the cone example, ELBO and IWAE against hierarchical guides.

The model (a point near the surface ``z = x^2 + y^2``)::

    x, y ~ N(0, 10)          z ~ N(x^2 + y^2, 0.1 + (x^2 + y^2) / 100)

observed ``z = 5``: the posterior over ``(x, y)`` is a thin ring of radius ``sqrt(5)``.
Five objectives are trained with Adam and then estimated with many samples:

- ``elbo`` and ``iwae`` (5 particles) with a mean-field Gaussian guide over ``(x, y)``;
- ``hvi``, ``iwhvi`` (5 inner particles) and ``diwhvi`` (5 outer, 5 inner) with a
  hierarchical guide: an angle ``u ~ Uniform(0, 1)``, then
  ``x ~ N(sqrt(z) cos 2 pi u, s1)``, ``y ~ N(sqrt(z) sin 2 pi u, s2)`` with learned
  scales, ``u`` integrated out with :func:`genvi.marginal`. The proposal (HVI's reverse
  model) for ``u`` given ``(x, y)`` is a normal wrapped onto ``[0, 1)`` around the angle
  of ``(x, y)``, with a learned scale.

Each value is a lower bound on ``log p(z = 5)``, which is computed here by numerical
integration for reference.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import optax
from numpyro.distributions import constraints

import genvi as gv

Z_OBS = 5.0
TWO_PI = 2.0 * math.pi


class UnitWrappedNormal(nd.Distribution):
    """``(loc + scale * eps) mod 1`` with ``eps ~ N(0, 1)``: a normal wrapped onto the unit
    circle ``[0, 1)``. Density ``sum_k N(u + k; loc, scale)``; the sum runs over
    ``|k| <= 5``, exact in float32 for ``scale <= 0.5`` (the terms left out lie 8
    standard deviations away or more). Reparameterized."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.interval(0.0, 0.5)}
    support = constraints.interval(0.0, 1.0)  # type: ignore[assignment]
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc, scale, *, validate_args=None):
        self.loc, self.scale = jnp.asarray(loc), jnp.asarray(scale)
        shape = jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale))
        super().__init__(batch_shape=shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        eps = jax.random.normal(key, tuple(sample_shape) + self.batch_shape)  # type: ignore[arg-type]
        return jnp.mod(self.loc + self.scale * eps, 1.0)

    def log_prob(self, value):
        k = jnp.arange(-5.0, 6.0)
        d = (value - jnp.mod(self.loc, 1.0))[..., None] + k
        s = self.scale[..., None]
        logp = -0.5 * (d / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(TWO_PI)
        return jax.scipy.special.logsumexp(logp, axis=-1)


wrapped_normal = gv.distribution(UnitWrappedNormal, "wrapped_normal")


@gv.gen
def cone():
    """``x, y ~ N(0, 10)``, ``z ~ N(x^2 + y^2, 0.1 + (x^2 + y^2) / 100)``."""
    x = gv.normal(0.0, 10.0) @ "x"
    y = gv.normal(0.0, 10.0) @ "y"
    r2 = x**2 + y**2
    gv.normal(r2, 0.1 + r2 / 100.0) @ "z"


@gv.gen
def mean_field(phi):
    """Independent normals over ``x`` and ``y``."""
    sd = jnp.exp(phi["log_sd"])
    gv.normal(phi["mu"][0], sd[0]) @ "x"
    gv.normal(phi["mu"][1], sd[1]) @ "y"


@gv.gen
def hierarchical(phi, z):
    """``u ~ Uniform(0, 1)``, ``x ~ N(sqrt(z) cos 2 pi u, s1)``, ``y ~ N(sqrt(z) sin 2 pi u, s2)``."""
    u = gv.uniform(0.0, 1.0) @ "u"
    s = jnp.exp(phi["log_s"])
    gv.normal(jnp.sqrt(z) * jnp.cos(TWO_PI * u), s[0]) @ "x"
    gv.normal(jnp.sqrt(z) * jnp.sin(TWO_PI * u), s[1]) @ "y"


@gv.gen
def angle_proposal(kept, phi, z):
    """``r(u | x, y)``: a wrapped normal around the angle of ``(x, y)`` (in turns)."""
    angle = jnp.arctan2(kept["y"], kept["x"]) / TWO_PI
    wrapped_normal(angle, 0.5 * jax.nn.sigmoid(phi["proposal"])) @ "u"


def setups(inner: int = 5, outer: int = 5, proposal: str = "learned"):
    """``name -> (objective, guide description, initial phi, hierarchical?)`` for the five
    objectives. ``proposal``: ``"learned"`` (the wrapped normal around the angle of
    ``(x, y)``) or ``"prior"`` (``u ~ Uniform(0, 1)`` itself) for the marginal over ``u``."""
    if proposal not in ("learned", "prior"):
        raise ValueError(f"proposal must be 'learned' or 'prior', got {proposal!r}")
    r = angle_proposal if proposal == "learned" else None
    hname = "hierarchical" if proposal == "learned" else "hierarchical, prior proposal"
    o = gv.objectives
    # the mean-field guide starts where the ring runs along an axis: the only places where a
    # diagonal Gaussian can lie along it (it drifts there only slowly from elsewhere)
    mf = {"mu": jnp.array([0.0, 2.0]), "log_sd": jnp.zeros(2)}
    hier = {"log_s": jnp.log(jnp.array([0.5, 0.5])), "proposal": jnp.asarray(-1.0)}
    return {
        "ELBO": (o.elbo(cone, mean_field), "mean-field Gaussian", mf, False),
        f"IWAE({outer})": (o.iwae(cone, mean_field, outer), "mean-field Gaussian", mf, False),
        "HVI": (o.hvi(cone, hierarchical, "u", r), hname, hier, True),
        f"IWHVI({inner})": (
            o.iwhvi(cone, hierarchical, "u", r, inner_particles=inner),
            hname,
            hier,
            True,
        ),
        f"DIWHVI({outer}, {inner})": (
            o.diwhvi(cone, hierarchical, "u", r, particles=outer, inner_particles=inner),
            hname,
            hier,
            True,
        ),
    }


def _guide_args(phi, hierarchical_guide: bool):
    return (phi, jnp.asarray(Z_OBS)) if hierarchical_guide else (phi,)


def train(objective, phi, hier: bool, key, steps: int, lr: float = 0.02):
    """Adam on ``phi`` for ``steps`` steps (one ``lax.scan``). Returns ``(phi, values)``."""
    opt = optax.adam(lr)
    obs = {"z": jnp.asarray(Z_OBS)}

    def step(carry, k):
        phi, state = carry
        v, g = objective.value_and_grad_estimate(k, (), _guide_args(phi, hier), obs, argnums=1)
        updates, state = opt.update(jax.tree_util.tree_map(jnp.negative, g[0]), state)
        return (optax.apply_updates(phi, updates), state), v

    @jax.jit
    def run(phi, keys):
        (phi, _), values = jax.lax.scan(step, (phi, opt.init(phi)), keys)
        return phi, values

    return run(phi, jax.random.split(key, steps))


def evaluate(objective, phi, hier: bool, key, samples: int):
    """Mean and standard error of ``samples`` independent estimates of the objective."""
    obs = {"z": jnp.asarray(Z_OBS)}
    est = jax.jit(jax.vmap(lambda k: objective.estimate(k, (), _guide_args(phi, hier), obs)))
    vals = np.asarray(est(jax.random.split(key, samples)), dtype=np.float64)
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(samples))


def log_evidence(z: float = Z_OBS) -> float:
    """``log p(z)`` by numerical integration. With ``s = x^2 + y^2`` (exponential with
    mean ``2 * 10^2`` under the prior): ``p(z) = ∫_0^inf (1/200) e^{-s/200}
    N(z; s, 0.1 + s/100) ds``."""
    from scipy import integrate, stats

    def f(s):
        return math.exp(-s / 200.0) / 200.0 * stats.norm.pdf(z, s, 0.1 + s / 100.0)

    points = [max(z - 3.0, 0.0), z, z + 3.0]
    total = 0.0
    edges = [0.0, *points, max(z + 50.0, 100.0)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        total += integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-12, limit=500)[0]
    total += integrate.quad(f, edges[-1], np.inf, epsabs=0.0, epsrel=1e-10)[0]
    return math.log(total)


def run(
    steps: int = 5000,
    seed: int = 0,
    samples: int = 10_000,
    lr: float = 0.02,
    proposal: str = "learned",
    report: Callable[[str], None] | None = None,
) -> dict:
    """Train and evaluate the five objectives; returns a JSON-able dict of results.
    ``report``, if given, is called with a line of progress before and after each
    objective."""
    key = jax.random.key(seed)
    rows = []
    todo = setups(proposal=proposal)
    for i, (name, setup) in enumerate(todo.items()):
        objective, guide_name, phi0, hier = setup
        k_train, k_eval = jax.random.split(jax.random.fold_in(key, i))
        t0 = time.perf_counter()
        if report is not None:
            report(f"  [{i + 1}/{len(todo)}] {name}: compiling and training {steps} steps...")
        phi, values = train(objective, phi0, hier, k_train, steps, lr)
        t1 = time.perf_counter()
        mean, se = evaluate(objective, phi, hier, k_eval, samples)
        if report is not None:
            report(
                f"  [{i + 1}/{len(todo)}] {name}: {mean:.3f} +- {se:.3f} (trained in "
                f"{t1 - t0:.1f} s, estimated from {samples} samples in "
                f"{time.perf_counter() - t1:.1f} s)"
            )
        rows.append(
            {
                "objective": name,
                "guide": guide_name,
                "value": mean,
                "se": se,
                "last_100_train_mean": float(jnp.mean(values[-100:])),
                "seconds": time.perf_counter() - t0,
                "phi": jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), phi),
            }
        )
    return {
        "steps": steps,
        "seed": seed,
        "samples": samples,
        "lr": lr,
        "proposal": proposal,
        "log_p_z": log_evidence(Z_OBS),
        "rows": rows,
    }


def table(result: dict) -> str:
    """The results as a markdown table."""
    lines = [
        "| objective | guide | value (± s.e.) | gap to log p(z=5) |",
        "|---|---|---|---|",
    ]
    lpz = result["log_p_z"]
    for r in result["rows"]:
        lines.append(
            f"| {r['objective']} | {r['guide']} | {r['value']:.3f} ± {r['se']:.3f} | "
            f"{lpz - r['value']:.3f} |"
        )
    lines.append(f"| log p(z=5), numerical integration | | {lpz:.4f} | 0 |")
    return "\n".join(lines)


def command(args) -> int:
    """Entry point of ``genvi cone`` (exit code 0; 2 for a bad --out)."""
    out = None
    if args.out is not None:
        out = os.path.abspath(args.out)
        if os.path.exists(out) and not os.path.isdir(out):
            print(
                f"genvi cone: error: --out {args.out} exists and is not a directory",
                file=sys.stderr,
            )
            return 2
    steps = args.steps
    if os.environ.get("GENVI_CI") == "1" and args.steps is None:
        steps = 200

    def report(line: str) -> None:
        print(line, flush=True)

    print(
        f"genvi cone: training and estimating five objectives, {steps or 5000} Adam steps each",
        flush=True,
    )
    result = run(
        steps=steps or 5000,
        seed=args.seed,
        samples=args.samples,
        lr=args.lr,
        proposal=args.proposal,
        report=report,
    )
    print(
        f"genvi cone: observed z = {Z_OBS}, {result['steps']} Adam steps "
        f"(lr {result['lr']}), {result['proposal']} proposal for u, values from {result['samples']} samples each, seed {args.seed}"
    )
    print(table(result))
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "cone.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(out, "cone.md"), "w") as f:
            f.write(table(result) + "\n")
        print(f"wrote {os.path.join(out, 'cone.json')} and cone.md")
    return 0
