"""gv.fit on several processes (jax.distributed, CPU collectives), for
tests/training/test_processes.py.

``python _processes_run.py <process id> <processes> <port> <folder>``: one process of
the run, with its share of the data (rows ``[id * n / processes, (id + 1) * n /
processes)``); it writes ``<folder>/process_<id>.json``. The test imports this module
for the model, the data and the one-process reference.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import genvi as gv


@gv.gen
def point(w, x):
    gv.normal(x @ w, 0.5) @ "y"


@gv.gen
def model(xs):
    w = gv.normal(jnp.zeros(3), 1.0) @ "w"
    gv.vmap(point, in_axes=(None, 0))(w, xs) @ "data"


@gv.gen
def guide(phi):
    gv.normal(phi["m"], jnp.exp(phi["s"])) @ "w"


elbo = gv.objectives.elbo(model, guide)
iwae = gv.objectives.iwae(model, guide, particles=8)


def loss(key, phi, batch):
    xs, ys = batch
    return elbo.estimate(key, (xs,), (phi,), {"data": {"y": ys}})


def iwae_loss(key, phi, batch):
    xs, ys = batch
    return iwae.estimate(key, (xs,), (phi,), {"data": {"y": ys}})


N = 64
STEPS = 40


def data():
    kx, kw = jax.random.split(jax.random.key(0))
    xs = np.asarray(jax.random.normal(kx, (N, 3)))
    ys = np.asarray(xs @ np.array([1.0, -2.0, 0.5]) + 0.5 * jax.random.normal(kw, (N,)))
    return xs, ys


OPTIMIZER = optax.adam(0.05)  # one object: the runs of a process share a compiled step
PHI = {"m": np.zeros(3, np.float32), "s": np.zeros(3, np.float32)}


def common(**kw):
    return (
        dict(
            key=jax.random.key(1),
            steps=STEPS,
            batch_size=16,
            optimizer=OPTIMIZER,
            chunk=10,
            progress=False,
            settings={"lr": 0.05},
        )
        | kw
    )


def tolist(tree):
    return jax.tree.map(lambda a: np.asarray(a).tolist(), tree)


def main(pid: int, n: int, port: int, folder: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=n, process_id=pid)
    from jax.sharding import Mesh

    from genvi.training import _checkpoint

    writes = []
    real_write = _checkpoint.atomic_write

    def counting_write(path, write):
        writes.append(os.path.basename(os.fspath(path)))
        real_write(path, write)

    _checkpoint.atomic_write = counting_write  # type: ignore[assignment]
    xs, ys = data()
    share = slice(pid * N // n, (pid + 1) * N // n)
    mine = (xs[share], ys[share])
    everywhere = jax.device_count()
    out: dict = {"process": pid, "devices": everywhere, "local_devices": jax.local_device_count()}

    full = gv.fit(loss, PHI, data=mine, mesh=everywhere, **common())
    out["full"] = tolist(full.params)
    out["history"] = full.history.objective.tolist()
    out["sharding"] = str(jax.tree.leaves(full.params)[0].sharding)

    ckpt = os.path.join(folder, "two.ckpt")
    half = gv.fit(
        loss,
        PHI,
        data=mine,
        mesh=everywhere,
        checkpoint=ckpt,
        checkpoint_every=10,
        **common(steps=STEPS // 2),
    )
    out["half_step"] = int(half.step)
    out["writes"] = list(writes)
    resumed = gv.fit(
        loss, PHI, data=mine, mesh=everywhere, resume=os.path.join(folder, "one.ckpt"), **common()
    )
    out["resumed_from_one"] = tolist(resumed.params)

    # a (data, particles) mesh: each process holds one position of the data axis and its
    # two devices the two positions of the particle axis
    devices = np.array(jax.devices()).reshape(n, everywhere // n)
    grid = Mesh(devices, ("data", "particles"))
    spread = gv.fit(iwae_loss, PHI, data=mine, mesh=grid, **common(steps=10))
    out["iwae"] = tolist(spread.params)

    errors = {}
    cases = {
        "no_mesh": dict(),
        "too_few_devices": dict(mesh=1),
        "data_within_processes": dict(mesh=Mesh(devices, ("particles", "data"))),
        "share_sizes": dict(
            mesh=everywhere, data=(mine[0][: 16 + 8 * pid], mine[1][: 16 + 8 * pid])
        ),
        "steps": dict(mesh=everywhere, steps=10 + pid),
        "indivisible_share": dict(mesh=everywhere, data=(mine[0][:3], mine[1][:3]), batch_size=2),
    }
    for name, kw in cases.items():
        try:
            gv.fit(loss, PHI, **(dict(data=mine) | common(steps=10) | kw))
        except ValueError as e:
            errors[name] = str(e)
    out["errors"] = errors
    with open(os.path.join(folder, f"process_{pid}.json"), "w") as fh:
        json.dump(out, fh)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
