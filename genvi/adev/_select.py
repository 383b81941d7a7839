"""Choosing gradient strategies by measurement: :func:`select_strategies`.

Which estimator is best for a choice depends on the objective around it: ENUM is exact
but runs the rest of the program once per value, MVD compares two runs, REINFORCE is
cheap but noisy, REPARAM needs a differentiable path. The figure of merit for training is
the work needed for a given precision, **variance x time**: the gradient variance of one
estimate times the time one estimate takes (halving the variance by averaging two
estimates doubles the time, so the product is what an estimator is worth per second).

:func:`select_strategies` measures it. It finds the choices the guide makes inside the
objective, then searches assignments of strategies to them greedily (coordinate descent
from the program's own strategies: one choice at a time, every valid strategy for it, the
best kept, sweeps repeated until nothing improves or the time budget is spent). Each
assignment is measured as it will run: the objective is built with
``guide.with_strategies(assignment)``, its ``grad_estimate`` compiled, its step time taken
as the median of repeated calls, and its variance as the total variance (summed over all
gradient elements) of ``samples`` estimates at fixed parameters. An assignment that
cannot run (ENUM inside a ``gv.scan`` body, say) is listed with its error and skipped.

Cost: each assignment tried costs one compilation, ``samples`` vmapped estimates and
``repeats`` timed ones; a sweep tries ``sum_i (|valid strategies of choice i| - 1)``
assignments. The result's table lists every measurement (and what the budget left out).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from genvi.core._choicemap import Address, format_address, normalize_address
from genvi.core._errors import AddressError, StrategyError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.distributions import _strategies as S
from genvi.distributions._overrides import Recording

_ALL = (S.REPARAM, S.REINFORCE, S.RLOO, S.UnorderedSet(2), S.Rebar(), S.ENUM, S.MVD)


@dataclass(frozen=True)
class Measurement:
    """One assignment, measured: the strategy of every choice (by address), the total
    gradient variance of one estimate, the median seconds per compiled estimate, the
    compile seconds, their product ``score = variance * seconds`` (lower is better), and
    the error that stopped it, if any."""

    strategies: dict
    variance: float
    seconds: float
    compile_seconds: float
    error: str | None = None

    @property
    def score(self) -> float:
        if self.error is not None:
            return float("inf")
        return self.variance * self.seconds


@dataclass
class Selection:
    """What :func:`select_strategies` found.

    Attributes:
        strategies: ``{address: strategy}`` for every choice of the guide (the chosen
            assignment; addresses relative to the guide).
        guide: ``guide.with_strategies(strategies)``, ready to use.
        best: the :class:`Measurement` of the chosen assignment.
        start: the measurement of the program's own strategies.
        table: every measurement, in the order taken.
        skipped: assignments the time budget left untried.
    """

    strategies: dict
    guide: GenerativeFunction
    best: Measurement
    start: Measurement
    table: list[Measurement] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as Markdown, best first."""
        addrs = list(self.strategies)
        head = " | ".join(format_address(a) for a in addrs)
        lines = [
            f"| {head} | variance | ms / estimate | variance x s | compile s | note |",
            "|" + "---|" * (len(addrs) + 5),
        ]
        for m in sorted(self.table, key=lambda m: m.score):
            names = " | ".join(m.strategies[a] for a in addrs)
            note = "chosen" if m is self.best else (m.error or "")
            if m.error is not None:
                lines.append(f"| {names} | - | - | - | - | {note} |")
            else:
                lines.append(
                    f"| {names} | {m.variance:.4g} | {m.seconds * 1e3:.3g} | {m.score:.4g} "
                    f"| {m.compile_seconds:.2f} | {note} |"
                )
        for s in self.skipped:
            names = " | ".join(s[a] for a in addrs)
            lines.append(f"| {names} | - | - | - | - | not tried: time budget |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()


def _sites(make_objective, guide, args, key):
    """``[(address, family, program strategy)]`` of the guide's choices in the objective,
    in the order they are made (each address once)."""
    rec = Recording(guide)
    objective = make_objective(rec)
    jax.make_jaxpr(lambda k: objective.estimate(k, *args))(key)
    out: dict[Address, Any] = {}
    for addr, family, _, own in rec.sites:
        out.setdefault(addr, (family, own))
    return [(a, fam, own) for a, (fam, own) in out.items()]


def _valid(family, candidates) -> list[S.Strategy]:
    out = []
    for s in candidates:
        try:
            s.check(family)
        except StrategyError:
            continue
        out.append(s)
    return out


def _total_variance(grads) -> float:
    leaves = [np.asarray(g, dtype=np.float64) for g in jax.tree_util.tree_leaves(grads)]
    return float(sum(np.sum(np.var(g, axis=0, ddof=1)) for g in leaves))


def select_strategies(
    make_objective: Callable[[GenerativeFunction], Any],
    guide: GenerativeFunction,
    args: Sequence,
    *,
    key,
    argnums: int | Sequence[int] = 0,
    budget_s: float = 60.0,
    samples: int = 64,
    repeats: int = 5,
    candidates: Sequence[S.Strategy] | Mapping[Any, Sequence[S.Strategy]] | None = None,
) -> Selection:
    """Choose a gradient strategy for every choice of ``guide`` by measuring
    variance x time (see the module docstring for the search and its cost).

    Args:
        make_objective: ``guide -> objective`` (an :class:`~genvi.Expectation`), e.g.
            ``lambda g: gv.objectives.elbo(model, g)``; called with the guide wrapped by
            ``with_strategies`` for each assignment tried.
        guide: the generative function whose choices get strategies.
        args: the objective's arguments after the key (as for ``grad_estimate``).
        key: a PRNG key; every assignment is measured on the same keys.
        argnums: which of ``args`` the gradient is taken in (as for ``grad_estimate``);
            the variance is summed over all of its elements.
        budget_s: wall-clock seconds for the search; assignments left untried are
            listed in the result.
        samples: gradient estimates per assignment for the variance (at least 2).
        repeats: timed calls per assignment (the median is kept).
        candidates: the strategies to try (default: REPARAM, REINFORCE, RLOO,
            UnorderedSet(2), Rebar(), ENUM and MVD, each where it applies; REBAR, whose
            value is a float, is reported as not applicable where the program uses the
            value as an index); a sequence for every choice, or a mapping from
            addresses to sequences.

    Returns:
        A :class:`Selection`: the chosen ``strategies``, the ``guide`` with them, and the
        table of measurements (``print(selection)`` shows it).

    Examples:
        >>> @gv.gen
        ... def guide(p):
        ...     gv.flip(p) @ "b"
        >>> def make(g):
        ...     @gv.expectation
        ...     def objective(key, p):
        ...         b = g.simulate(key, p).choices["b"]
        ...         return (b - 0.2) ** 2
        ...     return objective
        >>> sel = gv.select_strategies(make, guide, (0.3,), key=jax.random.key(0), samples=16)
        >>> sel.strategies[("b",)].name                   # exact, so zero variance
        'ENUM'
    """
    check_key(key, "select_strategies", single=True)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"select_strategies: samples must be an int >= 2, got {samples!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"select_strategies: repeats must be an int >= 1, got {repeats!r}")
    if not isinstance(guide, GenerativeFunction):
        raise TypeError(
            f"select_strategies: guide must be a generative function, got {type(guide).__name__}"
        )
    args = tuple(args)
    sites = _sites(make_objective, guide, args, key)
    if not sites:
        raise AddressError(
            f"select_strategies: {guide.name} makes no random choice inside the objective "
            "(is make_objective using the guide it is given?)"
        )
    per_site: dict[Address, list[S.Strategy]] = {}
    given = (
        {normalize_address(a): tuple(v) for a, v in candidates.items()}
        if isinstance(candidates, Mapping)
        else None
    )
    if given is not None:
        unknown = [a for a in given if a not in {s[0] for s in sites}]
        if unknown:
            raise AddressError(
                f"select_strategies: candidates name {', '.join(map(format_address, unknown))}, "
                f"which {guide.name} does not choose in the objective; its choices are at "
                f"{', '.join(format_address(s[0]) for s in sites)}"
            )
    for addr, family, own in sites:
        pool = given.get(addr, _ALL) if given is not None else (candidates or _ALL)
        valid = _valid(family, pool)
        if own not in valid and not isinstance(own, S.Baselined):
            valid = [own, *valid]
        per_site[addr] = valid

    own_names = {a: own.name for a, _, own in sites}
    keys = jax.random.split(key, samples + repeats)
    sample_keys, time_keys = keys[:samples], keys[samples:]
    started = time.perf_counter()

    def names(assign: dict) -> dict:
        return {a: (assign[a].name if a in assign else own_names[a]) for a, _, _ in sites}

    def measure(assign: dict) -> Measurement:
        g = guide.with_strategies(assign) if assign else guide
        objective = make_objective(g)

        def one(k):
            return objective.grad_estimate(k, *args, argnums=argnums)

        try:
            step = jax.jit(one)
            t0 = time.perf_counter()
            jax.block_until_ready(step(time_keys[0]))
            compile_s = time.perf_counter() - t0
            times = []
            for k in time_keys:
                t0 = time.perf_counter()
                jax.block_until_ready(step(k))
                times.append(time.perf_counter() - t0)
            grads = jax.jit(jax.vmap(one))(sample_keys)
        except StrategyError as e:
            return Measurement(names(assign), float("nan"), float("nan"), 0.0, str(e))
        except (TypeError, IndexError, ValueError) as e:
            floats = [a for a, st in assign.items() if st.float_value]
            if not floats:
                raise
            # a strategy whose value is a float (REBAR), where the program needs an
            # integer (an index, a comparison): not applicable here, reported as such
            where = ", ".join(format_address(a) for a in floats)
            why = f"the program cannot take a float value at {where}: {type(e).__name__}: {e}"
            return Measurement(names(assign), float("nan"), float("nan"), 0.0, why)
        variance = _total_variance(grads)
        if not np.isfinite(variance):
            return Measurement(
                names(assign), variance, statistics.median(times), compile_s, "non-finite"
            )
        return Measurement(names(assign), variance, statistics.median(times), compile_s)

    table: list[Measurement] = []
    skipped: list[dict] = []
    current: dict = {}
    start = measure(current)
    table.append(start)
    if start.error is not None:
        raise StrategyError(
            f"select_strategies: the objective does not run with the guide's own "
            f"strategies: {start.error}"
        )
    best = start
    tried = {tuple(sorted(names(current).items()))}
    improved = True
    while improved:
        improved = False
        for addr, _, _ in sites:
            base = dict(current)
            for s in per_site[addr]:
                trial = dict(base)
                trial[addr] = s
                signature = tuple(sorted(names(trial).items()))
                if signature in tried:
                    continue
                if time.perf_counter() - started > budget_s:
                    if names(trial) not in skipped:  # a later pass may meet it again
                        skipped.append(names(trial))
                    continue
                tried.add(signature)
                m = measure(trial)
                table.append(m)
                if m.score < best.score:
                    best, current, improved = m, trial, True
    full = {a: current.get(a, own) for a, _, own in sites}
    overrides = dict(current)
    return Selection(
        strategies=full,
        guide=guide.with_strategies(overrides) if overrides else guide,
        best=best,
        start=start,
        table=table,
        skipped=skipped,
    )


__all__ = ["select_strategies", "Selection", "Measurement"]
