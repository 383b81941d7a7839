"""Attend-Infer-Repeat (AIR; Eslami et al., 2016), the scene model of the programmable-VI
paper (Becker et al., PLDI 2024), written as a genvi model and guide.

A canvas of ``C x C`` pixels shows a random number of objects, at most ``steps``. Step
``t`` of the model runs only if object ``t`` is present::

    pres_0 ~ Bernoulli(p)                                         at "pres"
    for t = 0, 1, ...  while pres_t = 1:                          under "object{t}"
        where_t ~ N([3, 0, 0], diag([0.2, 1, 1])^2)   (scale, shift x, shift y)   "where"
        what_t  ~ N(0, I_50)                                                       "what"
        canvas += place(where_t, sigmoid(decoder(what_t) - 2))   (spatial transformer)
        pres_{t+1} ~ Bernoulli(p)          (is there another object?)             "more"
    x ~ N(canvas, 0.3^2)                                          at "x"

Each step is a :func:`genvi.cond` on the previous presence, so once an object is absent
the later steps are *absent*: their addresses hold no choice and count nothing. The guide
has the same structure. An LSTM reads the image and the previous step's latents; from its
state it predicts the presence probability and the ``where`` distribution; an encoder of
the window the ``where`` attends to predicts ``what``. The presence choices take the
estimator: each is a :data:`genvi.bernoulli` (by logit) with a strategy chosen per step, a one-word change
(:data:`ESTIMATORS`): REINFORCE, REINFORCE with a learned baseline, ENUM, MVD, or a mix
across steps. ``where`` and ``what`` are reparameterized throughout.

The networks are plain JAX (lists of ``{"w", "b"}`` layers, an LSTM cell in a few lines):
the parameters are then ordinary pytrees that :func:`genvi.fit`, checkpoints and the Pyro
runner of ``benchmarks/air.py`` all read directly.

Examples:
    >>> from genvi.models import air
    >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
    >>> params = cfg.init_params(jax.random.key(0))
    >>> x = jnp.zeros(20 * 20)
    >>> tr = cfg.guide("enum").simulate(jax.random.key(1), cfg.guide_params(params), x)
    >>> int(air.count(tr.choices)) in (0, 1, 2, 3)
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv
from genvi.core._derive import row_keys
from genvi.core._particles import particle_keys

ESTIMATORS: dict[str, tuple[str, ...]] = {
    "reinforce": ("reinforce",),
    "baseline": ("baseline",),
    "enum": ("enum",),
    "mvd": ("mvd",),
    "hybrid": ("enum", "mvd", "mvd"),
}
"""The presence strategies of each named estimator, one per step (one name for every
step): ``"reinforce"`` (:data:`genvi.bernoulli` ``.reinforce``, by logit), ``"baseline"``
(REINFORCE with a learned baseline, ``.reinforce.with_baseline(b)``), ``"enum"`` (``.enum``), ``"mvd"``
(``.mvd``), and ``"hybrid"``: ENUM at the first step, MVD at the later ones.

Examples:
    >>> from genvi.models import air
    >>> air.ESTIMATORS["hybrid"]
    ('enum', 'mvd', 'mvd')
"""

_STRATEGY_NAMES = ("reinforce", "baseline", "enum", "mvd")


# ---------------------------------------------------------------------------------------
# Networks (plain JAX).


def init_linear(key, n_in: int, n_out: int) -> dict:
    """``{"w": [n_in, n_out] ~ N(0, 1 / n_in), "b": zeros}``.

    Examples:
        >>> from genvi.models import air
        >>> air.init_linear(jax.random.key(0), 3, 2)["w"].shape
        (3, 2)
    """
    return {"w": jax.random.normal(key, (n_in, n_out)) / math.sqrt(n_in), "b": jnp.zeros(n_out)}


def init_mlp(key, sizes: list[int]) -> list[dict]:
    """Linear layers of the sizes given (see :func:`init_linear`).

    Examples:
        >>> from genvi.models import air
        >>> [l["w"].shape for l in air.init_mlp(jax.random.key(0), [4, 8, 2])]
        [(4, 8), (8, 2)]
    """
    keys = jax.random.split(key, len(sizes) - 1)
    return [init_linear(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def mlp(layers: list[dict], x):
    """ReLU hidden layers, a linear output layer.

    Examples:
        >>> from genvi.models import air
        >>> air.mlp(air.init_mlp(jax.random.key(0), [4, 8, 2]), jnp.ones(4)).shape
        (2,)
    """
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def lstm(cell: dict, inputs, state, *, projected=None):
    """One LSTM step: ``z = [inputs, h] @ w + b`` split into the gates ``i, f, g, o``
    (PyTorch's order); ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``.

    ``projected``, when given, is ``x @ w[:n]`` for a leading part ``x`` (``n`` long) of
    the inputs that is the same at every step (AIR's image), computed once by the caller;
    ``inputs`` is then the rest, and ``z = projected + [inputs, h] @ w[n:] + b``: the same
    ``z``, without multiplying the unchanged part again at each step.

    Examples:
        >>> from genvi.models import air
        >>> cell = air.init_linear(jax.random.key(0), 3 + 5, 4 * 5)
        >>> state = (jnp.zeros(5), jnp.ones(5))
        >>> h, c = air.lstm(cell, jnp.ones(3), state)
        >>> h.shape, c.shape
        ((5,), (5,))
        >>> h2, _ = air.lstm(cell, jnp.ones(1), state, projected=jnp.ones(2) @ cell["w"][:2])
        >>> bool(jnp.allclose(h, h2, atol=1e-6))
        True
    """
    h, c = state
    rest = jnp.concatenate([inputs, h])
    w = cell["w"]
    if projected is None:
        z = rest @ w + cell["b"]
    else:
        n = w.shape[0] - rest.shape[0]
        if n <= 0 or jnp.shape(projected) != (w.shape[1],):
            raise ValueError(
                f"air.lstm: projected must be x @ w[:n] (shape ({w.shape[1]},)) for a leading "
                f"part x of the {w.shape[0] - jnp.shape(h)[0]} inputs, with inputs the rest; "
                f"got projected of shape {jnp.shape(projected)} and {rest.shape[0] - jnp.shape(h)[0]} "
                "inputs (pass the inputs without the projected part)"
            )
        z = projected + rest @ w[n:] + cell["b"]
    i, f, g, o = jnp.split(z, 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


# ---------------------------------------------------------------------------------------
# The spatial transformer (Jaderberg et al., 2015), with scale and shift only.


def _interpolation(n_out: int, n_in: int, scale, shift):
    """The ``[n_out, n_in]`` matrix of bilinear weights: output pixel ``i`` (normalized
    coordinate ``u_i = (2 i + 1) / n_out - 1``) reads the input at normalized
    ``scale * u_i + shift``, pixel coordinate ``r = ((. + 1) n_in - 1) / 2``, with weight
    ``max(0, 1 - |r - j|)`` on input pixel ``j`` (inputs outside count zero)."""
    u = (2.0 * jnp.arange(n_out) + 1.0) / n_out - 1.0
    r = ((scale * u + shift + 1.0) * n_in - 1.0) / 2.0
    return jax.nn.relu(1.0 - jnp.abs(r[:, None] - jnp.arange(n_in)[None, :]))


def window_to_image(where, window, canvas: int):
    """Place a ``[W, W]`` window on a ``[canvas, canvas]`` image: image pixel at
    normalized coordinates ``(u, v)`` (``u`` along columns) reads the window at
    ``(s u + x, s v + y)`` for ``where = (s, x, y)``, bilinearly, zero outside. With
    scale ``s`` the window covers ``1/s`` of the image's width, centred at
    ``(-x / s, -y / s)``. This is PyTorch's ``affine_grid`` + ``grid_sample`` (bilinear,
    zero padding, ``align_corners=False``) with ``theta = [[s, 0, x], [0, s, y]]``, computed
    as two small matrix products since the transform is separable.

    Examples:
        >>> from genvi.models import air
        >>> window = jnp.ones((4, 4))
        >>> image = air.window_to_image(jnp.array([2.0, 0.0, 0.0]), window, 8)
        >>> float(image.sum()), image[:2].max().item(), image[3, 3].item()
        (16.0, 0.0, 1.0)
    """
    s, x, y = where[0], where[1], where[2]
    w = window.shape[0]
    rows = _interpolation(canvas, w, s, y)
    cols = _interpolation(canvas, w, s, x)
    return rows @ window @ cols.T


def image_to_window(where, image, window: int):
    """The ``[window, window]`` crop of ``image`` that ``where`` attends to: the inverse
    placement of :func:`window_to_image` (window pixel at normalized ``(u, v)`` reads the
    image at ``((u - x) / s, (v - y) / s)``).

    Examples:
        >>> from genvi.models import air
        >>> where = jnp.array([2.0, 0.0, 0.0])
        >>> image = air.window_to_image(where, jnp.eye(4), 8)
        >>> bool(jnp.allclose(air.image_to_window(where, image, 4), jnp.eye(4)))
        True
    """
    s, x, y = where[0], where[1], where[2]
    c = image.shape[0]
    rows = _interpolation(window, c, 1.0 / s, -y / s)
    cols = _interpolation(window, c, 1.0 / s, -x / s)
    return rows @ image @ cols.T


# ---------------------------------------------------------------------------------------
# The model, the guide and their objectives, for one configuration.


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


def _strategies(estimator, steps: int) -> tuple[str, ...]:
    if isinstance(estimator, str):
        if estimator in ESTIMATORS:
            names = ESTIMATORS[estimator]
        elif estimator in _STRATEGY_NAMES:
            names = (estimator,)
        else:
            raise ValueError(
                f"AIR: unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}, "
                f"or give one strategy per step from {list(_STRATEGY_NAMES)}"
            )
    else:
        names = tuple(estimator)
        bad = [n for n in names if n not in _STRATEGY_NAMES]
        if bad:
            raise ValueError(
                f"AIR: unknown presence strategy {bad[0]!r}; each step takes one of "
                f"{list(_STRATEGY_NAMES)}"
            )
    if len(names) == 1:
        names = names * steps
    if len(names) != steps:
        raise ValueError(
            f"AIR: {len(names)} presence strategies for {steps} steps; give one per step "
            "(or one name for all)"
        )
    return names


def _presence(strategy: str, logit, baseline):
    """The guide's presence choice, by logit (:data:`genvi.bernoulli`: its log density is
    computed from the logit, finite where a probability would round to 0 or 1)."""
    if strategy == "reinforce":
        return gv.bernoulli.reinforce(logit)
    if strategy == "baseline":
        return gv.bernoulli.reinforce.with_baseline(baseline)(logit)
    if strategy == "enum":
        return gv.bernoulli.enum(logit)
    return gv.bernoulli.mvd(logit)


@dataclasses.dataclass(frozen=True)
class AIR:
    """One AIR configuration: sizes, priors and likelihood. Its model, guides and
    objectives are built once per configuration (and cached), so compiled programs are
    reused.

    Attributes:
        canvas: the image's side, in pixels (images are flattened, ``canvas**2`` long).
        window: the side of an object's window (the decoder's output, and the crop the
            guide's encoder reads).
        steps: the most objects a scene holds.
        z_what: the size of an object's appearance code.
        hidden: the LSTM's state size.
        mlp_hidden: the hidden size of the decoder, encoder, predictor and baseline.
        pres_prior: the prior probability that another object is present. The default,
            ``1e-13``, makes each object cost about 30 nats: under the 0.3 pixel noise an
            extra window that redraws part of a digit already explained gains less than
            that, while a window on an unexplained 16x16 digit gains far more, so the
            count is the number of digits rather than the number of windows that help
            the likelihood (with ``0.5`` or ``0.01``, training settles on three windows per
            digit; with ``1e-20`` on none).
        where_loc, where_scale: the prior of ``(scale, shift x, shift y)``.
        likelihood_sd: the pixel noise.
        decoder_bias: added to the decoder's output before the sigmoid (dim windows at
            the start).
        max_logit: if set (default 4), the guide's presence logits are squashed into
            ``(-max_logit, max_logit)`` (``max_logit * tanh(logit / max_logit)``): a
            presence probability stays within ``[0.018, 0.982]``, so its gradient never
            vanishes and a step that turned an object off early can turn it on again.
            ``None`` leaves the logits free.

    Examples:
        >>> from genvi.models import air
        >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
        >>> params = cfg.init_params(jax.random.key(0))
        >>> sorted(params)
        ['baseline', 'decoder', 'encoder', 'lstm', 'predict']
        >>> tr = cfg.model.simulate(jax.random.key(1), params["decoder"])
        >>> tr.choices["x"].shape
        (400,)
    """

    canvas: int = 50
    window: int = 16
    steps: int = 3
    z_what: int = 50
    hidden: int = 256
    mlp_hidden: int = 200
    pres_prior: float = 1e-13
    where_loc: tuple[float, float, float] = (3.0, 0.0, 0.0)
    where_scale: tuple[float, float, float] = (0.2, 1.0, 1.0)
    likelihood_sd: float = 0.3
    decoder_bias: float = -2.0
    max_logit: float | None = 4.0

    def __post_init__(self):
        for name in ("canvas", "window", "steps", "z_what", "hidden", "mlp_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"AIR: {name} must be an int >= 1, got {v!r}")
        if not 0.0 < self.pres_prior < 1.0:
            raise ValueError(f"AIR: pres_prior must lie in (0, 1), got {self.pres_prior!r}")
        if self.likelihood_sd <= 0 or min(self.where_scale) <= 0:
            raise ValueError("AIR: likelihood_sd and where_scale must be positive")

    # -- parameters ---------------------------------------------------------------------

    def init_params(self, key, *, pres_logit: float = 2.0, where_scale: float = 0.1) -> dict:
        """Starting parameters: ``{"decoder", "lstm", "predict", "encoder", "baseline"}``.
        The predictor starts at presence probability ``sigmoid(pres_logit)`` and at the
        prior's ``where`` mean with standard deviations ``where_scale``.

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> cfg.init_params(jax.random.key(0))["lstm"]["w"].shape   # 400 + 3 + 4 + 1 + 16
            (424, 64)
        """
        k = jax.random.split(key, 5)
        pixels, h, m = self.canvas**2, self.hidden, self.mlp_hidden
        predict = init_mlp(k[2], [h, m, 7])
        bias = jnp.array([pres_logit, *self.where_loc] + [_softplus_inverse(where_scale)] * 3)
        predict[-1] = {"w": predict[-1]["w"] * 0.1, "b": bias}
        return {
            "decoder": init_mlp(k[0], [self.z_what, m, self.window**2]),
            "lstm": init_linear(k[1], pixels + 3 + self.z_what + 1 + h, 4 * h),
            "predict": predict,
            "encoder": init_mlp(k[3], [self.window**2, m, 2 * self.z_what]),
            "baseline": init_mlp(k[4], [h, m, 1]),
        }

    @staticmethod
    def guide_params(params: dict) -> dict:
        """The guide's part of ``params`` (everything but the decoder).

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> sorted(cfg.guide_params(cfg.init_params(jax.random.key(0))))
            ['baseline', 'encoder', 'lstm', 'predict']
        """
        return {k: v for k, v in params.items() if k != "decoder"}

    def _check_image(self, x):
        if jnp.shape(x) != (self.canvas**2,):
            raise gv.ChoiceTypeError(
                f"AIR: an image must be a flattened canvas of shape ({self.canvas**2},) "
                f"({self.canvas}x{self.canvas}), got shape {jnp.shape(x)}; reshape it to "
                f"x.reshape(-1), or make the AIR with canvas= its side"
            )

    # -- the model ----------------------------------------------------------------------

    def render(self, decoder, what, where):
        """The canvas contribution ``[canvas**2]`` of one object.

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> dec = cfg.init_params(jax.random.key(0))["decoder"]
            >>> cfg.render(dec, jnp.zeros(4), jnp.array([3.0, 0.0, 0.0])).shape
            (400,)
        """
        window = jax.nn.sigmoid(mlp(decoder, what) + self.decoder_bias)
        window = window.reshape(self.window, self.window)
        return window_to_image(where, window, self.canvas).reshape(-1)

    @functools.cached_property
    def model(self) -> gv.GenerativeFunction:
        """The generative model, called with the decoder's parameters; returns the canvas."""
        cfg = self
        where_loc = np.asarray(self.where_loc, np.float32)
        where_scale = np.asarray(self.where_scale, np.float32)

        def object_step(last: bool):
            @gv.gen
            def present(decoder, canvas):
                where = gv.normal(where_loc, where_scale) @ "where"
                what = gv.normal(jnp.zeros(cfg.z_what), 1.0) @ "what"
                canvas = canvas + cfg.render(decoder, what, where)
                more = jnp.zeros((), jnp.int32) if last else gv.flip(cfg.pres_prior) @ "more"
                return canvas, more

            return present

        @gv.gen
        def absent(decoder, canvas):
            return canvas, jnp.zeros((), jnp.int32)

        steps = [gv.cond(object_step(t == cfg.steps - 1), absent) for t in range(cfg.steps)]

        @gv.gen
        def air_model(decoder):
            canvas = jnp.zeros(cfg.canvas**2)
            pres = gv.flip(cfg.pres_prior) @ "pres"
            for t, step in enumerate(steps):
                canvas, pres = step(pres, decoder, canvas) @ f"object{t}"
            gv.normal(canvas, cfg.likelihood_sd) @ "x"
            return canvas

        return air_model

    # -- the guide ----------------------------------------------------------------------

    def _predict(self, gp, x_proj, where, what, pres, state):
        """The LSTM step and the networks reading its state. ``x_proj`` is the image's
        part of the LSTM's input product, ``x @ w[:pixels]``, which is the same at every
        step and so computed once per image (:meth:`_project`)."""
        inputs = jnp.concatenate([where, what, jnp.reshape(pres, (1,)).astype(where.dtype)])
        h, c = lstm(gp["lstm"], inputs, state, projected=x_proj)
        out = mlp(gp["predict"], h)
        if self.max_logit is not None:
            out = out.at[0].set(self.max_logit * jnp.tanh(out[0] / self.max_logit))
        baseline = mlp(gp["baseline"], jax.lax.stop_gradient(h))[0]
        return (h, c), out, baseline

    def _project(self, gp, x):
        return x @ gp["lstm"]["w"][: self.canvas**2]

    def guide(self, estimator: str | tuple[str, ...] = "enum") -> gv.GenerativeFunction:
        """The guide, called as ``(guide_params, x)``, with the presence strategies of
        ``estimator`` (a name of :data:`ESTIMATORS`, or one strategy per step from
        ``"reinforce"``, ``"baseline"``, ``"enum"``, ``"mvd"``). Returns
        ``(baselines [steps], drawn [steps])``: the baseline of each step's presence
        choice, and whether that choice was made (1 until an object is absent).

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> guide = cfg.guide(("enum", "mvd", "mvd"))     # the hybrid
            >>> gp = cfg.guide_params(cfg.init_params(jax.random.key(0)))
            >>> tr = guide.simulate(jax.random.key(1), gp, jnp.zeros(400))
            >>> tr.choices["object0", "where"].shape if tr.choices.has(("object0", "where")) else (3,)
            (3,)
        """
        return self._guide(_strategies(estimator, self.steps))

    @functools.lru_cache(maxsize=32)  # noqa: B019 - the configuration is frozen and small
    def _guide(self, strategies: tuple[str, ...]) -> gv.GenerativeFunction:
        cfg = self

        def object_step(t: int):
            last = t == cfg.steps - 1

            @gv.gen
            def present(gp, x, x_proj, state, out):
                where_scale = jax.nn.softplus(out[4:7])
                where = gv.normal(out[1:4], where_scale) @ "where"
                crop = image_to_window(where, x.reshape(cfg.canvas, cfg.canvas), cfg.window)
                e = mlp(gp["encoder"], crop.reshape(-1))
                what = gv.normal(e[: cfg.z_what], jax.nn.softplus(e[cfg.z_what :])) @ "what"
                if last:
                    return state, out, jnp.zeros(()), jnp.zeros((), jnp.int32)
                state, out, b = cfg._predict(gp, x_proj, where, what, 1, state)
                more = _presence(strategies[t + 1], out[0], b) @ "more"
                return state, out, b, more

            return present

        @gv.gen
        def absent(gp, x, x_proj, state, out):
            return state, out, jnp.zeros(()), jnp.zeros((), jnp.int32)

        steps = [gv.cond(object_step(t), absent) for t in range(cfg.steps)]

        @gv.gen
        def air_guide(gp, x):
            cfg._check_image(x)
            zeros = jnp.zeros(cfg.hidden)
            x_proj = cfg._project(gp, x)  # the image's share of every step's LSTM input
            state, out, b = cfg._predict(
                gp, x_proj, jnp.zeros(3), jnp.zeros(cfg.z_what), 1, (zeros, zeros)
            )
            pres = _presence(strategies[0], out[0], b) @ "pres"
            baselines, drawn = [b], [jnp.ones(())]
            for t, step in enumerate(steps):
                drawn.append(jnp.asarray(pres, jnp.float32))
                state, out, b, pres = step(pres, gp, x, x_proj, state, out) @ f"object{t}"
                baselines.append(b)
            return jnp.stack(baselines[: cfg.steps]), jnp.stack(drawn[: cfg.steps])

        return air_guide

    # -- objectives ---------------------------------------------------------------------

    def objective(
        self,
        estimator: str | tuple[str, ...] = "enum",
        objective: str = "elbo",
        particles: int | None = None,
    ):
        """The per-image objective ``(key, params, x) -> scalar`` for :func:`genvi.fit`
        (through :meth:`batch_objective`), maximized.

        - ``objective="elbo"``: :func:`genvi.objectives.elbo`; ``"iwae"``:
          :func:`genvi.objectives.iwae` with ``particles`` (default 2); ``"rws"``:
          reweighted wake-sleep (:func:`genvi.objectives.rws`, default 10 particles), the
          model trained on ``wake_model`` and the guide on ``wake_guide`` (the value is
          ``wake_model``'s, the IWAE bound). The presence strategies do not matter for
          RWS (it does not differentiate through the guide's sampling), so the guide
          samples its presence plainly whatever ``estimator`` says (enumerating would
          only cost: 10 particles, each enumerating 2^steps presence paths).
        - With the ``"baseline"`` strategy at some step, the ELBO and IWAE are written
          here as programs that also train the baseline: the guide returns each step's
          baseline ``b_t``, and the objective adds
          ``-(L - stop_gradient(L))`` with ``L = sum_t (stop_gradient(f) - b_t)^2`` over
          the steps whose presence was drawn (``f`` the bound's value, the learning signal
          REINFORCE uses). This term is zero in value, so the estimate is still the
          bound's, and its gradient trains the baseline toward ``E[f]``.

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> params = cfg.init_params(jax.random.key(0))
            >>> f = cfg.objective("baseline", "iwae", particles=2)
            >>> jax.jit(f)(jax.random.key(1), params, jnp.zeros(400)).shape
            ()
        """
        strategies = _strategies(estimator, self.steps)
        if objective not in ("elbo", "iwae", "rws"):
            raise ValueError(
                f"AIR: unknown objective {objective!r}; choose 'elbo', 'iwae' or 'rws'"
            )
        if objective == "elbo" and particles not in (None, 1):
            raise ValueError("AIR: the ELBO takes one particle; use objective='iwae'")
        if particles is None:
            particles = {"elbo": 1, "iwae": 2, "rws": 10}[objective]
        if objective == "rws":
            # RWS does not differentiate through the guide's sampling: the presence
            # strategies change nothing but the cost, so the guide samples plainly.
            strategies = ("reinforce",) * self.steps
        return self._objective(strategies, objective, int(particles))

    @functools.lru_cache(maxsize=64)  # noqa: B019 - the configuration is frozen and small
    def _objective(self, strategies, objective, particles):
        model, guide = self.model, self._guide(strategies)
        sg = jax.lax.stop_gradient

        def split(params, x):
            return (params["decoder"],), (self.guide_params(params), x), {"x": x}

        if objective == "rws":
            rws = gv.objectives.rws(model, guide, particles=particles)

            def rws_objective(key, params, x):
                margs, gargs, obs = split(params, x)
                wake = rws.wake_model(key, margs, sg(gargs), obs)
                phi = rws.wake_guide(key, sg(margs), gargs, obs)
                return wake + (phi - sg(phi))

            return rws_objective

        if "baseline" not in strategies:
            if objective == "elbo":
                bound = gv.objectives.elbo(model, guide)
            else:
                bound = gv.objectives.iwae(model, guide, particles=particles)

            def library_objective(key, params, x):
                return bound(key, *split(params, x))

            return library_objective

        @gv.expectation
        def bound_with_baseline(key, decoder, gp, x):
            # the guide's keys are those gv.objectives.elbo and iwae give it, so the value
            # is theirs on the same key (the baseline term is zero in value)
            def one(k):
                tr = guide.simulate(k, gp, x)
                logp, _ = model.assess(tr.choices.merge({"x": x}), decoder)
                baselines, drawn = tr.retval
                return logp - tr.score, baselines, drawn

            if particles == 1:
                f, baselines, drawn = one(row_keys(key, 3)[0])
            else:
                lw, baselines, drawn = jax.vmap(one)(particle_keys(key, particles))
                f = jax.nn.logsumexp(lw) - math.log(particles)
            loss = jnp.sum(drawn * (sg(f) - baselines) ** 2)
            return f - (loss - sg(loss))

        def baseline_objective(key, params, x):
            return bound_with_baseline(key, params["decoder"], self.guide_params(params), x)

        return baseline_objective

    def batch_objective(
        self,
        estimator: str | tuple[str, ...] = "enum",
        objective: str = "elbo",
        particles: int | None = None,
    ):
        """``(key, params, batch [B, canvas**2]) -> mean of the per-image objective``, the
        form :func:`genvi.fit` takes; each image has its own key.

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> params = cfg.init_params(jax.random.key(0))
            >>> f = cfg.batch_objective("reinforce")
            >>> jax.jit(f)(jax.random.key(1), params, jnp.zeros((3, 400))).shape
            ()
        """
        per_image = self.objective(estimator, objective, particles)

        def minibatch_objective(key, params, batch):
            if batch.ndim != 2 or batch.shape[1] != self.canvas**2:
                raise gv.ChoiceTypeError(
                    f"AIR: a minibatch must have shape [B, {self.canvas**2}] (flattened "
                    f"{self.canvas}x{self.canvas} images), got {tuple(batch.shape)}"
                )
            keys = jax.random.split(key, batch.shape[0])
            return jnp.mean(jax.vmap(lambda k, x: per_image(k, params, x))(keys, batch))

        return minibatch_objective

    # -- inference ----------------------------------------------------------------------

    def boxes(self, where):
        """The square each ``where = (s, x, y)`` places a window on, in canvas pixels:
        ``[..., 3]`` -> ``[..., 3]`` as ``(row0, col0, side)``, with side ``canvas / s``
        and centre column ``(1 - x / s) canvas / 2``, row ``(1 - y / s) canvas / 2``.

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=8, window=4)
            >>> cfg.boxes(jnp.array([2.0, 0.0, 0.0])).tolist()     # a 4x4 square, centred
            [2.0, 2.0, 4.0]
        """
        where = jnp.asarray(where)
        s, x, y = where[..., 0], where[..., 1], where[..., 2]
        side = self.canvas / s
        col = (1.0 - x / s) * self.canvas / 2 - side / 2
        row = (1.0 - y / s) * self.canvas / 2 - side / 2
        return jnp.stack([row, col, side], axis=-1)

    def infer(self, key, params, images):
        """The guide's inference for each image (presence drawn at random): the count
        ``[n]`` (int), and ``where`` ``[n, steps, 3]`` and presence ``[n, steps]`` of each
        step (zeros where absent).

        Examples:
            >>> from genvi.models import air
            >>> cfg = air.AIR(canvas=20, window=8, z_what=4, hidden=16, mlp_hidden=16)
            >>> params = cfg.init_params(jax.random.key(0))
            >>> counts, where, pres = cfg.infer(jax.random.key(1), params, jnp.zeros((5, 400)))
            >>> counts.shape, where.shape, pres.shape
            ((5,), (5, 3, 3), (5, 3))
        """
        keys = jax.random.split(key, jnp.shape(images)[0])
        n, (where, pres) = self._infer(keys, self.guide_params(params), jnp.asarray(images))
        return n, where, pres

    @functools.cached_property
    def _infer(self):
        guide = self._guide(("reinforce",) * self.steps)

        def one(k, gp, x):
            tr = guide.simulate(k, gp, x)
            return count(tr.choices), steps_of(tr.choices, self.steps)

        return jax.jit(jax.vmap(one, in_axes=(0, None, 0)))


def count(choices) -> jax.Array:
    """The number of present objects in a trace of the AIR model or guide.

    Examples:
        >>> from genvi.models import air
        >>> cm = gv.choice_map({"pres": 1, "object0": {"more": 1}, "object1": {"more": 0}})
        >>> int(air.count(cm))
        2
    """
    n = jnp.asarray(choices["pres"], jnp.int32)
    alive = n
    t = 0
    while choices.has((f"object{t}", "more")):
        alive = alive * jnp.asarray(choices[f"object{t}", "more"], jnp.int32)
        n = n + alive
        t += 1
    return n


def steps_of(choices, steps: int):
    """``(where [steps, 3], pres [steps])`` of a trace: each step's ``where`` (zeros where
    absent) and presence.

    Examples:
        >>> from genvi.models import air
        >>> cm = gv.choice_map({"pres": 1, "object0": {"where": jnp.ones(3), "more": 0}})
        >>> where, pres = air.steps_of(cm, 2)
        >>> where.tolist(), pres.tolist()
        ([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [1, 0])
    """
    pres, alive = [], jnp.asarray(choices["pres"], jnp.int32)
    wheres = []
    for t in range(steps):
        pres.append(alive)
        a = (f"object{t}", "where")
        w = choices[a] if choices.has(a) else jnp.zeros(3)
        wheres.append(jnp.where(alive > 0, w, 0.0))
        more = (f"object{t}", "more")
        alive = alive * (jnp.asarray(choices[more], jnp.int32) if choices.has(more) else 0)
    return jnp.stack(wheres), jnp.stack(pres)


__all__ = [
    "AIR",
    "ESTIMATORS",
    "count",
    "steps_of",
    "window_to_image",
    "image_to_window",
    "init_linear",
    "init_mlp",
    "mlp",
    "lstm",
]
