"""Run by tests/training/test_particles.py in a fresh process with 4 forced CPU devices:
the same estimates (value and gradient, same key) with the particles on one device and
spread over a mesh axis "particles", and gv.fit with such a mesh; prints JSON."""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

import genvi as gv
from genvi.training import _chunks


@gv.gen
def model(theta):
    z = gv.normal(theta * jnp.ones(3), 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


@gv.gen
def guide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


@gv.gen
def hierarchical(phi):  # a guide with an auxiliary variable, marginalized by 64 particles
    u = gv.normal(jnp.zeros(3), 1.0) @ "u"
    gv.normal(phi[0] + u * jnp.exp(phi[1]), 0.5) @ "z"


OBS = {"x": jnp.array([0.5, -1.0, 2.0])}
OBJECTIVES = {
    "iwae": gv.objectives.iwae(model, guide, particles=64),
    "iwae_63": gv.objectives.iwae(model, guide, particles=63),  # not a multiple of 4
    "vimco": gv.objectives.vimco(model, guide, particles=64),
    "iwae_dreg": gv.objectives.iwae(model, guide, particles=64, dreg=True),
    "marginal_guide": gv.objectives.elbo(model, gv.marginal(hierarchical, over="u", particles=64)),
}


def estimate(objective):
    def f(theta, phi):
        return objective.estimate(jax.random.key(7), (theta,), (phi,), OBS)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def tolist(tree):
    return jax.tree.map(lambda a: np.asarray(a).tolist(), tree)


def main(out_path):
    theta, phi = jnp.float32(0.3), jnp.stack([jnp.array([0.1, -0.2, 0.4]), jnp.zeros(3) - 0.5])
    devices = np.array(jax.devices())
    auto = Mesh(devices, ("particles",))
    explicit = jax.make_mesh((4,), ("particles",))
    out: dict = {"devices": len(devices), "estimates": {}}
    for name, objective in OBJECTIVES.items():
        f = estimate(objective)
        one = f(theta, phi)
        row = {"one": tolist(one), "one_collectives": "all-reduce" in _hlo(f, theta, phi)}
        with jax.set_mesh(auto):
            g = estimate(objective)
            row["sharded"] = tolist(g(theta, phi))
            row["sharded_collectives"] = "all-reduce" in _hlo(g, theta, phi)
        out["estimates"][name] = row
    try:
        with jax.set_mesh(explicit):
            estimate(OBJECTIVES["iwae"])(theta, phi)
    except ValueError as e:
        out["explicit_error"] = str(e)

    # gv.fit: a 2 x 2 mesh (data, particles) against one device, on the IWAE of a
    # regression; and a particles-only mesh with no data
    kx, kw = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(kx, (32, 3))
    ys = xs @ jnp.array([1.0, -2.0, 0.5]) + 0.5 * jax.random.normal(kw, (32,))
    iwae = gv.objectives.iwae(regression, regression_guide, particles=8)

    def loss(key, p, batch):
        bx, by = batch
        return iwae.estimate(key, (bx,), (p,), {"data": {"y": by}})

    start = {"m": jnp.zeros(3), "s": jnp.zeros(3)}
    common = dict(
        key=jax.random.key(1),
        steps=20,
        data=(xs, ys),
        batch_size=8,
        optimizer=optax.adam(0.05),
        chunk=10,
        progress=False,
    )
    one = gv.fit(loss, start, **common)
    grid = Mesh(devices.reshape(2, 2), ("data", "particles"))
    two_by_two = gv.fit(loss, start, mesh=grid, **common)
    data_only = gv.fit(loss, start, mesh=jax.make_mesh((4,), ("data",)), **common)

    def no_data(key, p):
        return OBJECTIVES["iwae"].estimate(key, (0.3,), (p,), OBS)

    kw2 = dict(key=jax.random.key(2), steps=10, optimizer=optax.adam(0.05), progress=False)
    alone = gv.fit(no_data, phi, **kw2)
    spread = gv.fit(no_data, phi, mesh=auto, **kw2)
    # with no data axis, only the particles can make the step reduce across devices
    spread_program = list(_chunks._COMPILED.values())[-1].as_text()
    errors = {}
    try:
        gv.fit(loss, start, mesh=Mesh(devices.reshape(2, 2), ("rows", "columns")), **common)
    except ValueError as e:
        errors["unnamed_axes"] = str(e)
    out["fit"] = {
        "one": tolist(one.params),
        "two_by_two": tolist(two_by_two.params),
        "data_only_explicit": tolist(data_only.params),
        "history_one": one.history.objective.tolist(),
        "history_two_by_two": two_by_two.history.objective.tolist(),
        "alone": tolist(alone.params),
        "spread": tolist(spread.params),
        "spread_collectives": "all-reduce" in spread_program,
        "errors": errors,
    }
    with open(out_path, "w") as fh:
        json.dump(out, fh)


@gv.gen
def point(w, x):
    gv.normal(x @ w, 0.5) @ "y"


@gv.gen
def regression(xs):
    w = gv.normal(jnp.zeros(3), 1.0) @ "w"
    gv.vmap(point, in_axes=(None, 0))(w, xs) @ "data"


@gv.gen
def regression_guide(p):
    gv.normal(p["m"], jnp.exp(p["s"])) @ "w"


def _hlo(f, *args) -> str:
    return f.lower(*args).compile().as_text()


if __name__ == "__main__":
    main(sys.argv[1])
