"""Run by tests/training/test_mesh.py in a fresh process with 4 forced CPU devices:
trains one model on 1 device and on a mesh of 4 and prints both results as JSON."""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import optax

import genvi as gv


@gv.gen
def point_model(w, x):
    gv.normal(x @ w, 0.5) @ "y"


@gv.gen
def guide(phi):
    gv.normal(phi["m"], jnp.exp(phi["s"])) @ "w"


@gv.gen
def model(xs):
    w = gv.normal(jnp.zeros(3), 1.0) @ "w"
    gv.vmap(point_model, in_axes=(None, 0))(w, xs) @ "data"


objective = gv.objectives.elbo(model, guide)


def loss(key, phi, batch):
    xs, ys = batch
    return objective.estimate(key, (xs,), (phi,), {"data": {"y": ys}})


def main(out_path, ckpt_dir):
    kx, kw = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(kx, (64, 3))
    ys = xs @ jnp.array([1.0, -2.0, 0.5]) + 0.5 * jax.random.normal(kw, (64,))
    phi = {"m": jnp.zeros(3), "s": jnp.zeros(3)}
    common = dict(
        key=jax.random.key(1),
        steps=40,
        data=(xs, ys),
        batch_size=16,
        optimizer=optax.adam(0.05),
        chunk=10,
        progress=False,
    )
    one = gv.fit(loss, phi, **common)
    four = gv.fit(loss, phi, mesh=4, **common)
    # checkpoint on 4 devices at step 20, resume on 1 device to 40
    half = gv.fit(loss, phi, mesh=4, checkpoint=f"{ckpt_dir}/run.ckpt", **{**common, "steps": 20})
    resumed = gv.fit(loss, phi, resume=f"{ckpt_dir}/run.ckpt", **common)
    errors = {}
    for name, kwargs in {
        "indivisible": dict(mesh=4, batch_size=6),
        "too_many": dict(mesh=8),
        "no_data": dict(mesh=4, data=None, batch_size=None),
    }.items():
        try:
            gv.fit(
                loss if name != "no_data" else (lambda k, p: loss(k, p, (xs, ys))),
                phi,
                **{**common, **kwargs},
            )
        except ValueError as e:
            errors[name] = str(e)
    sharding = str(jax.tree_util.tree_leaves(four.params)[0].sharding)
    with open(out_path, "w") as fh:
        json.dump(
            {
                "devices": len(jax.devices()),
                "one": jax.tree.map(lambda a: a.tolist(), one.params),
                "four": jax.tree.map(lambda a: a.tolist(), four.params),
                "resumed": jax.tree.map(lambda a: a.tolist(), resumed.params),
                "half_step": int(half.step),
                "history_one": one.history.objective.tolist(),
                "history_four": four.history.objective.tolist(),
                "errors": errors,
                "sharding": sharding,
            },
            fh,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
