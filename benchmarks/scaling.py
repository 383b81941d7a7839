"""Data-parallel scaling of ``gv.fit(mesh=N)``: step time and throughput against devices.

Two problems on the scikit-learn digits (binarized 8x8, 1437 training images; the VAE of
``genvi.models.vae``, as ``genvi vae`` trains it): the single-sample ELBO ("vae") and
IWAE with K = 64 particles per image ("iwae64"). Each runs

- **weak scaling**: ``--batch-per-device`` images per device, so the global batch grows
  with the devices (ideal: throughput x N, step time x 1);
- **strong scaling**: a fixed global batch of ``--global-batch`` images (ideal: step time
  / N); these runs are the same run whatever N, so the script also reports how far the
  objective of each step drifts from the one-device run (float rounding of the
  cross-device sums: it must stay at the 1e-5 level).

Each device count runs in its own process (``XLA_FLAGS`` is read when JAX starts), on
forced CPU devices (``--xla_force_host_platform_device_count=N``) unless
``--platform`` says otherwise. Times are those ``gv.fit`` measures around its compiled
chunks (``history.time``, compilation excluded): the median over ``--rounds`` runs of
``--steps`` steps in one process, then the median over ``--repeats`` sweeps of the device
counts, interleaved. Forced CPU devices share the machine's cores: on a small machine the
ratios show what partitioning costs, not a speed-up.

    python benchmarks/scaling.py [--devices 1 2 4] [--models vae iwae64] [--modes weak strong]
        [--steps 20]
        [--rounds 5] [--repeats 3] [--batch-per-device 32] [--global-batch 128]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

MODELS = ("vae", "iwae64")
MODES = ("weak", "strong")


def _worker(args) -> dict:
    """One device count: every (model, mode), timed in this process."""
    import jax
    import optax

    import genvi as gv
    from genvi.models import vae

    devices = args.worker
    assert jax.device_count() >= devices, (jax.device_count(), devices)
    ds = gv.data.digits(seed=0)
    params = vae.init_params(
        jax.random.key(0), pixels=ds.train.shape[1], latent=args.latent, hidden=args.hidden
    )
    objectives = {
        "vae": gv.objectives.elbo(vae.model, vae.guide),
        "iwae64": gv.objectives.iwae(vae.model, vae.guide, particles=args.particles),
    }
    optimizer = optax.adam(1e-3)
    out: dict = {"devices": devices, "platform": jax.devices()[0].platform, "runs": {}}
    for name in args.models:
        objective = vae.batch_objective(objectives[name])
        for mode in args.modes:
            batch = args.batch_per_device * devices if mode == "weak" else args.global_batch
            kw = dict(
                key=jax.random.key(1),
                optimizer=optimizer,
                data=ds.train,
                batch_size=batch,
                chunk=args.steps,
                progress=False,
                mesh=devices,
            )
            warm = gv.fit(objective, params, steps=1, **kw)  # compiles (cached below)
            step_s, history = [], None
            for _ in range(args.rounds):
                r = gv.fit(objective, params, steps=args.steps, **kw)
                step_s.append(float(r.history.time.sum()) / args.steps)
                history = r.history.objective.tolist()
            med = statistics.median(step_s)
            out["runs"][f"{name}/{mode}"] = {
                "batch": batch,
                "step_ms": 1e3 * med,
                "images_per_s": batch / med,
                "compile_s": warm.compile_time,
                "objective": history,
                # where fit put the parameters: the devices the run was partitioned over
                "devices_used": len(jax.tree.leaves(r.params)[0].sharding.device_set),
            }
    return out


def _run_devices(n: int, args) -> dict:
    env = dict(os.environ)
    if args.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flag = f"--xla_force_host_platform_device_count={n}"
        env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), flag]).strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n)]
    for name in ("steps", "rounds", "batch_per_device", "global_batch", "latent", "hidden"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    cmd += ["--particles", str(args.particles), "--models", *args.models, "--modes", *args.modes]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the run on {n} devices failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _merge(repeats: list[dict]) -> dict:
    """One device count's repeated runs as one: the median step time over the repeats
    (the objectives are the same in every repeat: same key, same data)."""
    out = dict(repeats[0], runs={})
    for key, first in repeats[0]["runs"].items():
        step_ms = statistics.median(r["runs"][key]["step_ms"] for r in repeats)
        out["runs"][key] = dict(
            first,
            step_ms=step_ms,
            images_per_s=1e3 * first["batch"] / step_ms,
            step_ms_repeats=[r["runs"][key]["step_ms"] for r in repeats],
        )
    return out


def summarize(per_devices: list[dict]) -> dict:
    """Ratios to the one-device run (the first of ``per_devices``) and the drift of the
    strong-scaling objectives from it."""
    base = per_devices[0]
    rows = []
    for res in per_devices:
        for key, run in res["runs"].items():
            ref = base["runs"][key]
            name, mode = key.split("/")
            row = {
                "model": name,
                "mode": mode,
                "devices": res["devices"],
                "batch": run["batch"],
                "step_ms": run["step_ms"],
                "images_per_s": run["images_per_s"],
                "throughput_ratio": run["images_per_s"] / ref["images_per_s"],
                "step_time_ratio": run["step_ms"] / ref["step_ms"],
                "compile_s": run["compile_s"],
                "devices_used": run["devices_used"],
            }
            if mode == "strong":
                drift = [
                    abs(a - b) / max(abs(b), 1.0)
                    for a, b in zip(run["objective"], ref["objective"], strict=True)
                ]
                row["max_rel_drift_from_one_device"] = max(drift)
            rows.append(row)
    return {"base_devices": base["devices"], "platform": base["platform"], "rows": rows}


def table(summary: dict) -> str:
    head = (
        "| model | scaling | devices | global batch | step (ms) | images/s | "
        "throughput / 1 device | step time / 1 device |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in sorted(summary["rows"], key=lambda r: (r["model"], r["mode"], r["devices"])):
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['devices']} | {r['batch']} | "
            f"{r['step_ms']:.2f} | {r['images_per_s']:.0f} | {r['throughput_ratio']:.2f} | "
            f"{r['step_time_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--steps", type=int, default=20, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs (the median is kept)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="sweeps over the device counts, interleaved"
    )
    ap.add_argument("--batch-per-device", type=int, default=32, help="weak scaling")
    ap.add_argument("--global-batch", type=int, default=128, help="strong scaling")
    ap.add_argument("--particles", type=int, default=64, help="K of iwae64")
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument(
        "--platform",
        choices=("cpu", "default"),
        default="cpu",
        help="cpu: forced CPU devices; default: the devices JAX finds (e.g. GPUs)",
    )
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args)))
        return {}
    devices = sorted(set(args.devices))
    for n in devices:
        if args.global_batch % n:
            ap.error(f"--global-batch {args.global_batch} does not split over {n} devices")
    # the sweep over device counts is repeated, interleaved (1, 2, 4, 1, 2, 4, ...), so that
    # a burst of load from other programs hits every count alike; per configuration the
    # median of the repeats' medians is kept
    sweeps = [[_run_devices(n, args) for n in devices] for _ in range(args.repeats)]
    summary = summarize([_merge([sweep[i] for sweep in sweeps]) for i in range(len(devices))])
    summary["settings"] = {
        k: getattr(args, k)
        for k in (
            "steps",
            "rounds",
            "repeats",
            "batch_per_device",
            "global_batch",
            "particles",
            "hidden",
        )
    }
    print(table(summary))
    drifts = [r["max_rel_drift_from_one_device"] for r in summary["rows"] if r["mode"] == "strong"]
    if drifts:
        print(
            f"strong scaling: max relative drift of the objective from one device {max(drifts):.2e}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
