"""``import genvi`` changes nothing in JAX for code outside genvi.

Each check runs plain-JAX snippets in fresh interpreters, with and without ``import genvi``
first, and compares what they print (results and error types alike).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SNIPPETS = textwrap.dedent(
    r"""
    import json, sys
    if sys.argv[1] == "with":
        import genvi  # noqa: F401
    import jax, jax.numpy as jnp

    out = {}

    # A custom_jvp whose rule puts stop_gradient on the tangent: forward mode works, and
    # reverse mode must fail as plain JAX fails (no transpose rule for stop_gradient).
    @jax.custom_jvp
    def f(x):
        return 3.0 * x

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), 3.0 * jax.lax.stop_gradient(t)

    out["jvp"] = float(jax.jvp(f, (1.0,), (1.0,))[1])
    try:
        out["grad"] = float(jax.grad(f)(1.0))
    except Exception as e:
        out["grad"] = type(e).__name__

    # A batched cond under reverse mode.
    g = jax.vmap(jax.grad(lambda x, i: jax.lax.cond(i > 0, jnp.sin, jnp.cos, x)), (0, 0))
    out["cond"] = [round(float(v), 6) for v in g(jnp.arange(3.0), jnp.array([0, 1, 0]))]
    out["rng"] = [int(v) for v in jax.random.randint(jax.random.key(0), (3,), 0, 100)]
    out["config"] = {
        k: str(getattr(jax.config, k))
        for k in ("jax_enable_x64", "jax_default_prng_impl", "jax_numpy_rank_promotion",
                  "jax_debug_nans", "jax_disable_jit", "jax_platforms")
    }
    # Every registry JAX dispatches on, restricted to JAX's own primitives.
    from jax.interpreters import ad
    def own(table):
        def who(rule):
            return getattr(rule, "__module__", "?") + "." + getattr(rule, "__qualname__", "?")
        return {str(p): who(r) for p, r in table.items() if not str(p).startswith("genvi")}
    out["transposes"] = own(ad.primitive_transposes)
    out["jvps"] = own(ad.primitive_jvps)
    print(json.dumps(out))
    """
)


def _run(mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPETS, mode],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": ""},
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_changes_nothing_in_plain_jax():
    without, with_genvi = _run("without"), _run("with")
    assert without["grad"] == "NotImplementedError"  # what plain JAX does
    assert without["jvp"] == 3.0
    for k in ("jvp", "grad", "cond", "rng", "config"):
        assert with_genvi[k] == without[k], f"import genvi changed {k}"
    # genvi's dependencies may register rules for primitives of their own (JAX's sparse
    # module, say); no rule of JAX's own primitives may change, and none comes from genvi.
    for table in ("transposes", "jvps"):
        for prim, rule in without[table].items():
            assert with_genvi[table][prim] == rule, f"import genvi changed the {table} of {prim}"
        for prim, rule in with_genvi[table].items():
            assert not rule.startswith("genvi"), f"genvi registers a {table} rule for {prim}"
