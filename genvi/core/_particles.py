"""Particle keys, and how particles are spread over devices.

Every multi-particle construct in genvi (``gv.objectives.log_weights`` and the objectives
built on it, ``vimco``, ``rws``, the DReG and PIWAE estimators, the inner particles of
:func:`genvi.marginal` and :func:`genvi.normalize`) draws its particles by
``jax.vmap`` over one key per particle, made by :func:`particle_keys`. That is the one
place where the particle axis is born, so it is where it is laid out:

- with no mesh set (the default), ``particle_keys`` makes ``particles`` independent
  keys from one, as ``jax.random.split`` does, but by elementwise arithmetic rather
  than a PRNG call for threefry keys (:func:`genvi.core._derive.row_keys`), and
  nothing else;
- when the current mesh (``jax.set_mesh(mesh)``, or the ``mesh=`` of ``gv.fit``) has an
  axis named ``"particles"``, the keys are sharded along it. XLA's partitioner carries
  that sharding through the vmapped computation (each device computes the weights of its
  share of the particles, forward and backward) and inserts the cross-device reductions
  where the particles are combined (a ``logsumexp``, a mean).

The values do not change: each particle's key is an elementwise function of the parent
key and its index, so it, and therefore its draws, are the same whatever the layout; only
the order of the final sums may differ (float rounding). A count that does not divide the
axis is padded by XLA. When particle loops nest (an IWAE over a ``gv.marginal`` model), each one asks for the
same axis; the inner one is then resharded, which costs communication but not accuracy.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, PartitionSpec

from genvi.core._derive import row_keys

#: The mesh axis over which particles are spread, when the current mesh has one.
PARTICLES_AXIS = "particles"


def particle_keys(key, particles: int):
    """``particles`` independent keys, one per particle (what ``jax.random.split(key,
    particles)`` gives, without its PRNG call: see :mod:`genvi.core._derive`), sharded over the axis ``"particles"`` of the current mesh when it has
    one (see :mod:`genvi.core._particles`), so that a ``jax.vmap`` over them runs spread
    over those devices. The keys, and so every draw made with them, are the same with or
    without a mesh.

    Examples:
        >>> keys = gv.objectives.particle_keys(jax.random.key(0), 8)   # no mesh
        >>> keys.shape
        (8,)
        >>> len({tuple(map(int, k)) for k in jax.random.key_data(keys)})   # all distinct
        8

        With a mesh whose axis ``"particles"`` spans the devices (one device here), of
        type Auto:

        >>> auto = (jax.sharding.AxisType.Auto,)
        >>> mesh = jax.make_mesh((len(jax.devices()),), ("particles",), axis_types=auto)
        >>> with jax.set_mesh(mesh):
        ...     keys = gv.objectives.particle_keys(jax.random.key(0), 8)
        >>> keys.sharding.spec == jax.sharding.PartitionSpec("particles")
        True
    """
    keys = row_keys(key, particles)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or PARTICLES_AXIS not in mesh.axis_names:
        return keys
    if mesh.axis_types[mesh.axis_names.index(PARTICLES_AXIS)] != AxisType.Auto:
        raise ValueError(
            f"particle_keys: the current mesh's {PARTICLES_AXIS!r} axis has type "
            f"{mesh.axis_types[mesh.axis_names.index(PARTICLES_AXIS)]}; genvi spreads particles "
            "by a sharding constraint that XLA propagates, which needs an Auto axis. Make the "
            "mesh with axis_types=(jax.sharding.AxisType.Auto, ...) (jax.make_mesh makes "
            "Explicit axes by default; gv.fit(mesh=...) converts them itself)"
        )
    return jax.lax.with_sharding_constraint(keys, PartitionSpec(PARTICLES_AXIS))


__all__ = ["PARTICLES_AXIS", "particle_keys"]
