"""The Pyro runner of the Attend-Infer-Repeat (AIR) benchmark (``benchmarks/air.py``).

The same AIR model and guide as ``genvi/models/air.py`` (Eslami et al., 2016; after Pyro's
own example ``examples/air``, but with the architecture fixed below rather than Pyro's),
written as Pyro programs over torch modules whose weights come from a genvi parameter
pytree, so the benchmark can time one training step of each system on the same network.

Architecture (shared with genvi, ``genvi/models/air.py``):

- Images are ``C x C = 50 x 50`` canvases flattened row-major to 2500 pixels; an object is
  a ``W x W = 16 x 16`` window (256 pixels). At most ``T = 3`` objects per image, drawn in
  order: object ``t`` is there (``z_pres_t = 1``) only if object ``t - 1`` is.
- Latents per step: ``z_pres`` (0/1), ``z_where = (s, x, y)`` (scale and shift of the
  window), ``z_what`` (50 numbers, the window's content).
- Model: ``z_pres_0 ~ Bernoulli(0.5)``, ``z_pres_{t+1} ~ Bernoulli(0.5)`` while the
  previous is 1; ``z_where ~ N([3, 0, 0], [0.2, 1, 1])``, ``z_what ~ N(0, I)``; the
  window ``sigmoid(mlp(decoder, z_what) - 2)`` is placed on the canvas with the spatial
  transformer and the windows of the present objects are added; ``x ~ N(canvas, 0.3)`` on
  every pixel.
- Guide: an LSTM cell (hidden 256, gates in torch's order i, f, g, o) reads
  ``concat(x, prev z_where, prev z_what, prev z_pres)`` each step, starting from
  ``h = c = 0``, zeros for the previous ``z_where`` and ``z_what`` and 1 for the previous
  ``z_pres``; ``out = mlp(predict, h)`` gives the presence logit ``out[0]``, the
  ``z_where`` location ``out[1:4]`` and scale ``softplus(out[4:7])``; the window the
  guide attends to, cut out of ``x`` at the sampled ``z_where``, goes through
  ``mlp(encoder, .)``, whose output gives the ``z_what`` location ``[:50]`` and scale
  ``softplus([50:])``. The REINFORCE baseline of ``z_pres_t`` is
  ``mlp(baseline, h.detach())``. The image's part of the LSTM's input product
  (``x W_ih[:, :2500]^T``) is the same at every step; both systems compute it once per
  guide run and add it to the rest of each step's product.
- Every MLP has one hidden layer of 200 ReLU units and a linear output layer.
- Spatial transformer (torch's ``affine_grid`` + ``grid_sample``, bilinear, zero padding,
  ``align_corners=False``): pixel ``i`` of an axis of ``n`` pixels sits at the normalized
  coordinate ``(2 i + 1) / n - 1`` (x is the column, y the row). Placing a window
  (``window_to_image``): the canvas pixel at ``(u, v)`` reads the window at
  ``(s u + x, s v + y)``. Attending (``image_to_window``): the window pixel at ``(u, v)``
  reads the image at ``((u - x) / s, (v - y) / s)``. Reading an ``n x n`` image at the
  normalized ``(a, b)`` interpolates bilinearly between the four pixels around column
  ``((a + 1) n - 1) / 2`` and row ``((b + 1) n - 1) / 2``; pixels outside count as 0.

Parameters: the genvi pytree ``{"decoder": [l, l], "lstm": {"w", "b"}, "predict": [l, l],
"encoder": [l, l], "baseline": [l, l]}``, each linear layer ``l = {"w": [n_in, n_out],
"b": [n_out]}`` applied as ``x @ w + b`` (so a ``torch.nn.Linear`` gets ``weight = w.T``);
the LSTM's ``w`` is ``[2500 + 3 + 50 + 1 + 256, 1024]`` (input rows, then hidden rows),
``weight_ih = w[:2554].T``, ``weight_hh = w[2554:].T``, ``bias_ih = b`` and ``bias_hh``
a fixed zero buffer (not a parameter, so the LSTM has one bias, as in genvi, and Adam
does not move it twice). All float32.

How the Pyro programs express "later steps are absent": every image runs all ``T`` steps,
``z_pres_t ~ Bernoulli(p_t)`` while ``z_pres_{t-1} = 1`` and 0 after (so a 0 stays 0), ``z_where_t`` and
``z_what_t`` are sampled under ``.mask(z_pres_t)`` (an absent step adds 0 to either
log density) and the canvas adds ``z_pres_t * window``. A trace then has the same log
joint and guide density as in genvi, where absent steps do not run: the presence choices
are Bernoulli by logit, and after an absent step the logit is ``-1e4`` (so ``z_pres = 0``
scores exactly 0). All sites sit in ``pyro.plate("data", B)``;
the likelihood is ``Normal(canvas, 0.3).to_event(1)`` over the 2500 pixels.

Estimators (``estimator=``):

- ``"reinforce"``: ``TraceGraph_ELBO``, score-function gradient for ``z_pres`` without a
  baseline. Pyro tracks which costs depend on each ``z_pres_t`` (provenance), so the
  score of ``z_pres_t`` is weighted by that image's costs from step ``t`` on, not by the
  whole ELBO (lower variance than the plain estimator, same expectation).
- ``"reinforce_baseline"``: the same with ``infer={"baseline": {"baseline_value": b_t}}``,
  ``b_t = mlp(baseline, h_t.detach()) * z_pres_{t-1}`` (zero on absent steps, as in
  Pyro's example, so those add nothing to the baseline loss); Pyro adds its own baseline
  loss ``(downstream cost - b_t)^2``, which trains the baseline MLP.
- ``"enum"``: ``TraceEnum_ELBO(max_plate_nesting=1)`` with the guide's ``z_pres_t``
  enumerated in parallel (``infer={"enumerate": "parallel"}``): each ``z_pres_t`` gets
  its own enumeration dimension, and the LSTM, networks and transformer broadcast over
  them (a step-``t`` tensor has leading shape ``[2] * (t + 1) + [B]``; they are flattened
  to a batch for ``LSTMCell`` and ``grid_sample``), so a step costs up to ``2^T = 8``
  copies of the network. The ELBO is exact in ``z_pres`` (the sum over its 8
  configurations weighted by ``q``) with reparameterized ``z_where``, ``z_what``.
- ``"iwae_reinforce"``: IWAE with 2 particles per image,
  ``log (1/2) sum_k p(x, z_k) / q(z_k)``, score-function gradient for ``z_pres``.
  Pyro's ``RenyiELBO(alpha=0)`` computes this value per image but its gradient leaves
  out the score-function term of a non-reparameterized site: its surrogate adds
  ``alpha / (1 - alpha) * log q(z_pres)``, which is 0 at ``alpha = 0``, and does not
  put ``log q(z_pres)`` anywhere else, so the presence logit gets no gradient at all
  (``pyro-ppl/pyro#1222``; the self-check below shows the zero). So this estimator is
  :class:`IWAEReinforce`, an ``ELBO`` subclass written here on Pyro's own traces
  (``get_importance_trace``, vectorized particles, ``score_parts``): value
  ``L = logmeanexp_k log w_k`` per image, surrogate
  ``L + stop_gradient(L) * sum_k sum_t log q(z_pres_{k,t})`` (unbiased; what genvi's
  REINFORCE computes for the IWAE expectation).
- ``"iwae_renyi"``: Pyro's stock ``RenyiELBO(alpha=0, num_particles=2,
  vectorize_particles=True)``, kept for timing only (its ``z_pres`` gradient is wrong, as
  above).

Each instance registers its modules with ``pyro.module`` under its own name prefix
(``air<n>_decoder``, ...), so several runners live in one process and one param store
without sharing weights, and keeps its own torch RNG state (restored around each step),
so interleaving runners does not change any runner's draws. The optimizer is
``pyro.optim.Adam({"lr": lr})`` (one torch Adam per parameter, Pyro's way).

``torch.set_num_threads(2)``: the benchmark machine has 2 cores (shared with JAX in the
same process, which runs one computation at a time); torch's default would also be the
core count, but pinning it keeps the comparison the same on a bigger machine.

    python benchmarks/_air_pyro.py   # self-check: transformer, LSTM layout, 5 steps each
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, cast

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions.util import is_identically_zero
from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO
from pyro.infer.elbo import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.renyi_elbo import RenyiELBO
from torch import nn

C, W, Z_WHAT, Z_WHERE, T, H, HID = 50, 16, 50, 3, 3, 256, 200
D = C * C
LSTM_IN = D + Z_WHERE + Z_WHAT + 1
SD_X = 0.3
PRES_PRIOR = 0.5
# genvi's AIR squashes the guide's presence logit to MAX_LOGIT * tanh(logit / MAX_LOGIT)
# (None: not squashed); benchmarks/air.py sets both from the genvi configuration.
MAX_LOGIT: float | None = None
# The presence choices are Bernoulli by logit, as in genvi (torch clamps a probability to
# [eps, 1 - eps] of float32, which would score a prior of 1e-13 as 1.2e-7). After an
# absent step the logit is IMPOSSIBLE: z_pres = 0 scores log(1 - e^-1e4) = 0 exactly and 1
# scores -1e4 (finite, so that enumeration's zero weight times it is 0, not NaN).
IMPOSSIBLE = -1e4


def _presence_logits(logit: torch.Tensor, prev_pres: torch.Tensor) -> torch.Tensor:
    return torch.where(prev_pres > 0, logit, torch.full_like(logit, IMPOSSIBLE))


WHERE_LOC, WHERE_SCALE = (3.0, 0.0, 0.0), (0.2, 1.0, 1.0)
ESTIMATORS = ("reinforce", "reinforce_baseline", "enum", "iwae_reinforce", "iwae_renyi")

_instances = itertools.count()


# ---------------------------------------------------------------- numpy parameters
def random_params(seed: int = 0) -> dict:
    """A parameter pytree with the spec's shapes: ``w ~ N(0, 1 / n_in)``, ``b = 0``, and
    the output bias of ``predict`` ``[2, 3, 0, 0, softplus^-1(0.1) x 3]`` (objects start
    present, with probability 0.88, at scale 3 and ``z_where`` scale 0.1)."""
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        w = rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_in, n_out)).astype(np.float32)
        return {"w": w, "b": np.zeros(n_out, np.float32)}

    params = {
        "decoder": [dense(Z_WHAT, HID), dense(HID, W * W)],
        "lstm": dense(LSTM_IN + H, 4 * H),
        "predict": [dense(H, HID), dense(HID, 1 + 2 * Z_WHERE)],
        "encoder": [dense(W * W, HID), dense(HID, 2 * Z_WHAT)],
        "baseline": [dense(H, HID), dense(HID, 1)],
    }
    inv_sp = math.log(math.expm1(0.1))
    params["predict"][1]["b"] = np.array([2.0, 3.0, 0.0, 0.0] + [inv_sp] * 3, np.float32)
    return params


def _mlp(layers) -> nn.Sequential:
    """Linear-ReLU-...-Linear with the weights of ``layers`` (``x @ w + b``)."""
    mods = []
    for i, layer in enumerate(layers):
        w = np.asarray(layer["w"], np.float32)
        lin = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer["b"], np.float32)))
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def _lstm_cell(p) -> nn.LSTMCell:
    w = np.asarray(p["w"], np.float32)
    n_in = w.shape[0] - H
    cell = nn.LSTMCell(n_in, H)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(np.ascontiguousarray(w[:n_in].T)))
        cell.weight_hh.copy_(torch.from_numpy(np.ascontiguousarray(w[n_in:].T)))
        cell.bias_ih.copy_(torch.from_numpy(np.asarray(p["b"], np.float32)))
    # One bias, as in the spec: bias_hh becomes a zero buffer (LSTMCell.forward reads the
    # attribute either way), so it is neither a Pyro param nor trained.
    del cell.bias_hh
    cell.register_buffer("bias_hh", torch.zeros(4 * H))
    return cell


def _linear_to_numpy(lin: nn.Linear) -> dict:
    return {"w": lin.weight.detach().numpy().T.copy(), "b": lin.bias.detach().numpy().copy()}


# ---------------------------------------------------------------- broadcasting helpers
def _cat(*xs: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last axis, broadcasting the leading (batch, enumeration,
    particle) axes."""
    lead = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
    return torch.cat([x.expand(*lead, x.shape[-1]) for x in xs], -1)


def _project(cell: nn.LSTMCell, x):
    """The image's share of the LSTM's input product, ``x @ W_ih[:, :pixels]^T``: the same
    at every step, so computed once per guide run (genvi's guide does the same)."""
    return x @ cell.weight_ih[:, : x.shape[-1]].T


def _lstm_projected(cell: nn.LSTMCell, x_proj, rest, h, c):
    """One step of ``cell`` on the input ``[x, rest]`` with ``x``'s product given:
    ``z = x_proj + rest W_rest^T + h W_hh^T + b``, gates in PyTorch's order."""
    n_x = cell.weight_ih.shape[1] - rest.shape[-1]
    w = torch.cat([cell.weight_ih[:, n_x:], cell.weight_hh], 1)
    z = x_proj + _cat(rest, h) @ w.T + cell.bias_ih + cell.bias_hh
    i, f, g, o = z.chunk(4, -1)
    c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c2), c2


def _theta(s, x, y):
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, x], -1), torch.stack([zero, s, y], -1)], -2)


def _sample_grid(theta, src, n_src, n_out):
    """``grid_sample`` of the ``n_src x n_src`` images ``src [..., n_src^2]`` on the grid
    ``affine_grid(theta [..., 2, 3])`` of an ``n_out x n_out`` output; leading axes
    broadcast."""
    lead = torch.broadcast_shapes(theta.shape[:-2], src.shape[:-1])
    theta = theta.expand(*lead, 2, 3).reshape(-1, 2, 3)
    src = src.expand(*lead, src.shape[-1]).reshape(-1, 1, n_src, n_src)
    grid = F.affine_grid(theta, [theta.shape[0], 1, n_out, n_out], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(*lead, n_out * n_out)


def window_to_image(z_where: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Place ``window [..., W*W]`` on a ``C x C`` canvas: the canvas pixel at normalized
    ``(u, v)`` reads the window at ``(s u + x, s v + y)``. Returns ``[..., C*C]``."""
    s, x, y = z_where.unbind(-1)
    return _sample_grid(_theta(s, x, y), window, W, C)


def image_to_window(z_where: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Cut the attention window out of ``image [..., C*C]``: the window pixel at
    normalized ``(u, v)`` reads the image at ``((u - x) / s, (v - y) / s)``. Returns
    ``[..., W*W]``."""
    s, x, y = z_where.unbind(-1)
    return _sample_grid(_theta(1 / s, -x / s, -y / s), image, C, W)


# ---------------------------------------------------------------- IWAE with REINFORCE
class IWAEReinforce(ELBO):
    """The IWAE bound per image, ``L = log (1/K) sum_k w_k``, with the score-function
    gradient for non-reparameterized guide sites: surrogate
    ``L + stop_gradient(L) * sum_k (log q of the non-reparameterized sites of particle k)``
    (``log w_k`` itself stays differentiable, pathwise through the reparameterized
    sites). Particles are vectorized (a plate at dim ``-1 - max_plate_nesting``); every
    site must be in the same plates, so that ``log w`` is per image. ``loss`` and
    ``loss_and_grads`` return ``-sum_images L``.

    Pyro's ``RenyiELBO(alpha=0)`` has the same value, but its surrogate drops these
    score terms (see the module docstring)."""

    def __init__(self, num_particles: int = 2, max_plate_nesting: int = 1):
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def _objective(self, model, guide, args, kwargs):
        ((model_trace, guide_trace),) = list(self._get_traces(model, guide, args, kwargs))
        log_w, score = 0.0, 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w + site["log_prob"]
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w - site["log_prob"]
                sf = site["score_parts"].score_function
                if not is_identically_zero(sf):
                    score = score + sf
        assert isinstance(log_w, torch.Tensor)
        if self.num_particles > 1:
            lw = log_w.reshape(self.num_particles, -1)  # [K, images]
            value = torch.logsumexp(lw, 0) - math.log(self.num_particles)
            if isinstance(score, torch.Tensor):
                score = score.expand(log_w.shape).reshape(self.num_particles, -1).sum(0)
        else:
            value = log_w.reshape(-1)
            if isinstance(score, torch.Tensor):
                score = score.expand(log_w.shape).reshape(-1)
        surrogate = value + value.detach() * score
        return value.sum(), surrogate.sum()

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            value, _ = self._objective(model, guide, args, kwargs)
        return -value.item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        value, surrogate = self._objective(model, guide, args, kwargs)
        if surrogate.requires_grad:
            (-surrogate).backward()
        return -value.item()


# ---------------------------------------------------------------- the runner
class PyroAIR:
    """The AIR model and guide in Pyro, with weights from the genvi pytree ``params``,
    trained by ``SVI`` with ``pyro.optim.Adam({"lr": lr})`` and the objective named by
    ``estimator`` (one of :data:`ESTIMATORS`; see the module docstring). ``particles``
    is the IWAE particle count (the IWAE estimators only; 2 in the benchmark)."""

    def __init__(
        self,
        params: dict,
        *,
        estimator: str,
        particles: int = 1,
        lr: float = 1e-4,
        seed: int = 0,
    ):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
        torch.set_num_threads(2)
        self.estimator = estimator
        self.prefix = f"air{next(_instances)}_"
        self.decoder = _mlp(params["decoder"])
        self.lstm = _lstm_cell(params["lstm"])
        self.predict: nn.Sequential = _mlp(params["predict"])
        self.encoder = _mlp(params["encoder"])
        self.baseline = _mlp(params["baseline"])
        self.where_loc = torch.tensor(WHERE_LOC)
        self.where_scale = torch.tensor(WHERE_SCALE)

        if estimator in ("reinforce", "reinforce_baseline"):
            loss = TraceGraph_ELBO(max_plate_nesting=1)
        elif estimator == "enum":
            loss = TraceEnum_ELBO(max_plate_nesting=1)
        elif estimator == "iwae_reinforce":
            loss = IWAEReinforce(num_particles=particles, max_plate_nesting=1)
        else:
            loss = RenyiELBO(
                alpha=0, num_particles=particles, max_plate_nesting=1, vectorize_particles=True
            )
        self.loss = loss
        adam = pyro.optim.Adam({"lr": lr})  # pyright: ignore[reportAttributeAccessIssue]
        self.svi = SVI(self.model, self.guide, adam, loss=loss)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._rng = torch.get_rng_state()

    # -- programs
    def model(self, x: torch.Tensor):
        pyro.module(self.prefix + "decoder", self.decoder)
        n = x.shape[0]
        with pyro.plate("data", n):
            canvas = x.new_zeros(n, D)
            prev_pres = x.new_ones(n)
            for t in range(T):
                prior_logit = torch.full_like(prev_pres, math.log(PRES_PRIOR / (1 - PRES_PRIOR)))
                z_pres = pyro.sample(
                    f"z_pres_{t}",
                    dist.Bernoulli(logits=_presence_logits(prior_logit, prev_pres)),
                )
                mask = z_pres.bool()
                z_where = pyro.sample(
                    f"z_where_{t}",
                    dist.Normal(
                        self.where_loc.expand(n, Z_WHERE), self.where_scale.expand(n, Z_WHERE)
                    )
                    .to_event(1)
                    .mask(mask),
                )
                z_what = pyro.sample(
                    f"z_what_{t}",
                    dist.Normal(x.new_zeros(n, Z_WHAT), 1.0).to_event(1).mask(mask),
                )
                window = torch.sigmoid(self.decoder(z_what) - 2.0)
                canvas = canvas + z_pres.unsqueeze(-1) * window_to_image(z_where, window)
                prev_pres = z_pres
            pyro.sample("obs", dist.Normal(canvas, SD_X).to_event(1), obs=x)

    def guide(self, x: torch.Tensor):
        for name in ("lstm", "predict", "encoder"):
            pyro.module(self.prefix + name, getattr(self, name))
        with_baseline = self.estimator == "reinforce_baseline"
        if with_baseline:
            pyro.module(self.prefix + "baseline", self.baseline)
        n = x.shape[0]
        with pyro.plate("data", n):
            h, c = x.new_zeros(n, H), x.new_zeros(n, H)
            prev_where, prev_what = x.new_zeros(n, Z_WHERE), x.new_zeros(n, Z_WHAT)
            prev_pres = x.new_ones(n)
            x_proj = _project(self.lstm, x)
            for t in range(T):
                rest = _cat(prev_where, prev_what, prev_pres[..., None])
                h, c = _lstm_projected(self.lstm, x_proj, rest, h, c)
                out = self.predict(h)
                infer: Any = {}
                if with_baseline:
                    b = self.baseline(h.detach()).squeeze(-1) * prev_pres
                    infer = {"baseline": {"baseline_value": b}}
                elif self.estimator == "enum":
                    infer = {"enumerate": "parallel"}
                logit = out[..., 0]
                if MAX_LOGIT is not None:
                    logit = MAX_LOGIT * torch.tanh(logit / MAX_LOGIT)
                z_pres = pyro.sample(
                    f"z_pres_{t}",
                    dist.Bernoulli(logits=_presence_logits(logit, prev_pres)),
                    infer=infer,
                )
                mask = z_pres.bool()
                z_where = pyro.sample(
                    f"z_where_{t}",
                    dist.Normal(out[..., 1:4], F.softplus(out[..., 4:7])).to_event(1).mask(mask),
                )
                e = self.encoder(image_to_window(z_where, x))
                z_what = pyro.sample(
                    f"z_what_{t}",
                    dist.Normal(e[..., :Z_WHAT], F.softplus(e[..., Z_WHAT:]))
                    .to_event(1)
                    .mask(mask),
                )
                prev_where, prev_what, prev_pres = z_where, z_what, z_pres

    # -- training
    def step(self, batch: np.ndarray) -> float:
        """One SVI step on the minibatch ``batch [B, 2500]``; returns the objective (ELBO,
        or the IWAE bound) per image, ``-loss / B``, at the parameters before the step."""
        x = torch.as_tensor(np.asarray(batch, np.float32))
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng)
            loss = self.svi.step(x)
            self._rng = torch.get_rng_state()
        return -float(cast(float, loss)) / x.shape[0]

    def get_params(self) -> dict:
        """The current weights, in the genvi layout of ``params``."""

        def mlp(seq):
            return [_linear_to_numpy(m) for m in seq if isinstance(m, nn.Linear)]

        w = np.concatenate(
            [self.lstm.weight_ih.detach().numpy().T, self.lstm.weight_hh.detach().numpy().T]
        )
        return {
            "decoder": mlp(self.decoder),
            "lstm": {"w": w, "b": self.lstm.bias_ih.detach().numpy().copy()},
            "predict": mlp(self.predict),
            "encoder": mlp(self.encoder),
            "baseline": mlp(self.baseline),
        }

    # -- densities of a given trace
    def log_joint_and_guide(self, x, z_pres, z_where, z_what) -> tuple[np.ndarray, np.ndarray]:
        """``(log p(x, z) [n], log q(z | x) [n])`` of the given trace, computed by Pyro
        (``poutine.condition`` + ``poutine.trace``, each site's ``log_prob`` summed per
        image). ``z_pres [n, T]`` is 0/1 and non-increasing along ``T``; the values of
        ``z_where [n, T, 3]`` and ``z_what [n, T, 50]`` at absent steps are ignored (they
        are replaced by ``[3, 0, 0]`` and 0 so that the transformer stays finite; masked,
        they change neither density)."""
        x = torch.as_tensor(np.asarray(x, np.float32))
        pres = np.asarray(z_pres, np.float32)
        if pres.shape != (x.shape[0], T) or not np.isin(pres, (0.0, 1.0)).all():
            raise ValueError(f"z_pres must be 0/1 of shape {(x.shape[0], T)}, not {pres.shape}")
        if (np.diff(pres, axis=1) > 0).any():
            raise ValueError("z_pres must be non-increasing along the steps (absent after a 0)")
        where = np.where(pres[..., None] > 0, np.asarray(z_where, np.float32), WHERE_LOC)
        what = np.where(pres[..., None] > 0, np.asarray(z_what, np.float32), 0.0)
        data = {}
        for t in range(T):
            data[f"z_pres_{t}"] = torch.from_numpy(np.ascontiguousarray(pres[:, t]))
            data[f"z_where_{t}"] = torch.from_numpy(np.ascontiguousarray(where[:, t], np.float32))
            data[f"z_what_{t}"] = torch.from_numpy(np.ascontiguousarray(what[:, t], np.float32))
        out = []
        with torch.no_grad():
            for program in (self.model, self.guide):
                tr = poutine.trace(poutine.condition(program, data=data)).get_trace(x)
                tr.compute_log_prob()
                total = torch.zeros(x.shape[0])
                sites: list[Any] = list(tr.nodes.values())
                for site in sites:
                    if site["type"] == "sample":
                        total = total + site["log_prob"]
                out.append(total.numpy().astype(np.float64))
        return out[0], out[1]


def log_joint_and_guide(params, x, z_pres, z_where, z_what) -> tuple[np.ndarray, np.ndarray]:
    """``PyroAIR(params, ...).log_joint_and_guide(x, z_pres, z_where, z_what)``: the
    model's log joint and the guide's log density of a given trace, per image."""
    return PyroAIR(params, estimator="reinforce").log_joint_and_guide(x, z_pres, z_where, z_what)


# ---------------------------------------------------------------- self-check
def _np_bilinear(img, a, b):
    """Read the ``n x n`` image at normalized ``(a, b)`` by the spec's formula."""
    n = img.shape[0]
    col, row = ((a + 1) * n - 1) / 2, ((b + 1) * n - 1) / 2
    c0, r0 = math.floor(col), math.floor(row)
    fc, fr = col - c0, row - r0
    total = 0.0
    for dr, dc, wt in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r, cc = r0 + dr, c0 + dc
        if 0 <= r < n and 0 <= cc < n:
            total += wt * img[r, cc]
    return total


def _np_window_to_image(zw, window):
    s, x, y = zw
    out = np.zeros((C, C))
    for i in range(C):
        for j in range(C):
            u, v = (2 * j + 1) / C - 1, (2 * i + 1) / C - 1
            out[i, j] = _np_bilinear(window, s * u + x, s * v + y)
    return out


def _np_image_to_window(zw, image):
    s, x, y = zw
    out = np.zeros((W, W))
    for i in range(W):
        for j in range(W):
            u, v = (2 * j + 1) / W - 1, (2 * i + 1) / W - 1
            out[i, j] = _np_bilinear(image, (u - x) / s, (v - y) / s)
    return out


def _check_transformer() -> bool:
    rng = np.random.default_rng(0)
    zw = (3.0, 0.2, -0.4)
    window = np.zeros((W, W))
    r, cc = 4, 11
    window[r, cc] = 1.0
    got = window_to_image(torch.tensor(zw), torch.tensor(window.ravel(), dtype=torch.float32))
    got = got.numpy().reshape(C, C)
    ref = _np_window_to_image(zw, window)
    # Where the pixel lands: the canvas point (u, v) with s u + x = its column centre.
    s, x, y = zw
    u, v = ((2 * cc + 1) / W - 1 - x) / s, ((2 * r + 1) / W - 1 - y) / s
    want_col, want_row = ((u + 1) * C - 1) / 2, ((v + 1) * C - 1) / 2
    rows, cols = np.nonzero(got > 0)
    mass = got.sum()
    centre = ((got.sum(1) * np.arange(C)).sum() / mass, (got.sum(0) * np.arange(C)).sum() / mass)
    print(
        f"window pixel (row {r}, col {cc}) placed with z_where={zw}: lands around canvas "
        f"row {centre[0]:.2f}, col {centre[1]:.2f} (spec: row {want_row:.2f}, col {want_col:.2f}); "
        f"nonzero rows {rows.min()}..{rows.max()}, cols {cols.min()}..{cols.max()}; "
        f"max |torch - numpy| {np.abs(got - ref).max():.2e}"
    )
    ok = np.allclose(got, ref, atol=1e-5) and abs(centre[0] - want_row) < 0.1
    ok = ok and abs(centre[1] - want_col) < 0.1
    # Random windows / images, several z_where, both directions.
    for zw in ((3.0, 0.2, -0.4), (1.7, -0.5, 0.3), (0.8, 0.1, 0.9)):
        win = rng.uniform(size=(W, W))
        img = rng.uniform(size=(C, C))
        t_img = window_to_image(torch.tensor(zw), torch.tensor(win.ravel(), dtype=torch.float32))
        t_win = image_to_window(torch.tensor(zw), torch.tensor(img.ravel(), dtype=torch.float32))
        e1 = np.abs(t_img.numpy().reshape(C, C) - _np_window_to_image(zw, win)).max()
        e2 = np.abs(t_win.numpy().reshape(W, W) - _np_image_to_window(zw, img)).max()
        print(f"  z_where={zw}: window_to_image err {e1:.1e}, image_to_window err {e2:.1e}")
        ok = ok and e1 < 1e-5 and e2 < 1e-5
    return bool(ok)


def _check_lstm(params) -> bool:
    rng = np.random.default_rng(1)
    cell = _lstm_cell(params["lstm"])
    inp = rng.normal(size=(4, LSTM_IN)).astype(np.float32)
    h = rng.normal(size=(4, H)).astype(np.float32)
    c = rng.normal(size=(4, H)).astype(np.float32)
    z = np.concatenate([inp, h], 1).astype(np.float64) @ params["lstm"]["w"] + params["lstm"]["b"]
    i, f, g, o = np.split(z, 4, axis=1)

    def sig(a):
        return 1 / (1 + np.exp(-a))

    c_ref = sig(f) * c + sig(i) * np.tanh(g)
    h_ref = sig(o) * np.tanh(c_ref)
    with torch.no_grad():
        t_inp = torch.from_numpy(inp)
        x, rest = t_inp[:, : C * C], t_inp[:, C * C :]
        x_proj = _project(cell, x)
        h2, c2 = _lstm_projected(cell, x_proj, rest, torch.from_numpy(h), torch.from_numpy(c))
    err = max(np.abs(h2.numpy() - h_ref).max(), np.abs(c2.numpy() - c_ref).max())
    print(f"LSTM step (image part projected once) vs the spec's formula: max err {err:.1e}")
    return bool(err < 1e-4)


def _renyi_pres_grad(params, x) -> tuple[float, float]:
    """|d/d(presence logit bias)| of one surrogate under Pyro's RenyiELBO and under
    IWAEReinforce, same draws."""
    out = []
    for est in ("iwae_renyi", "iwae_reinforce"):
        air = PyroAIR(params, estimator=est, particles=2, seed=3)
        torch.set_rng_state(air._rng)
        air.loss.loss_and_grads(air.model, air.guide, torch.as_tensor(x))
        bias = cast(nn.Linear, air.predict[-1]).bias
        assert bias.grad is not None
        out.append(float(bias.grad[0].abs()))
        for p in pyro.get_param_store().values():
            p.grad = None
    return out[0], out[1]


def main():
    params = random_params(0)
    ok_st = _check_transformer()
    ok_lstm = _check_lstm(params)
    print(
        f"spatial transformer check: {'OK' if ok_st else 'FAILED'}; LSTM check: {'OK' if ok_lstm else 'FAILED'}"
    )

    rng = np.random.default_rng(1)
    B = 64
    x = np.clip(rng.normal(0.1, 0.3, (B, D)), 0, 1).astype(np.float32)

    for est in ("reinforce", "reinforce_baseline", "enum", "iwae_reinforce", "iwae_renyi"):
        air = PyroAIR(params, estimator=est, particles=2 if est.startswith("iwae") else 1)
        times, vals = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            vals.append(air.step(x))
            times.append(time.perf_counter() - t0)
        print(
            f"{est:>19}: {np.median(times[1:]):.3f} s/step (median of steps 2-5; first "
            f"{times[0]:.3f} s), objective per image {' '.join(f'{v:.1f}' for v in vals)}"
        )

    g_renyi, g_ours = _renyi_pres_grad(params, x)
    print(
        f"|d surrogate / d presence-logit bias|: RenyiELBO(alpha=0) {g_renyi:.3g}, "
        f"IWAEReinforce {g_ours:.3g} (RenyiELBO drops the z_pres score term)"
    )

    # A hand-built trace: image 0 with 0 objects, 1 with 1, 2 with 3.
    n = 3
    z_pres = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 1]], np.float32)
    z_where = np.tile(np.array([3.0, 0.0, 0.0], np.float32), (n, T, 1))
    z_where[1, 0] = [2.5, 0.3, -0.2]
    z_where[2] = [[3.0, -0.5, -0.5], [3.2, 0.5, 0.4], [2.8, 0.0, 0.6]]
    z_what = rng.normal(size=(n, T, Z_WHAT)).astype(np.float32) * z_pres[..., None]
    logp, logq = log_joint_and_guide(params, x[:n], z_pres, z_where, z_what)
    print(f"hand-built trace (0, 1, 3 objects): logp {np.round(logp, 3)}, logq {np.round(logq, 3)}")
    # Absent steps count 0: changing their values changes nothing.
    z_where2, z_what2 = z_where.copy(), z_what.copy()
    z_where2[0] = 7.0
    z_what2[1, 1:] = 5.0
    logp2, logq2 = log_joint_and_guide(params, x[:n], z_pres, z_where2, z_what2)
    same = np.array_equal(logp, logp2) and np.array_equal(logq, logq2)
    print(f"absent steps ignored: {same}")
    # Image 0 by hand: log 0.5 for z_pres_0 = 0 plus the likelihood of an empty canvas.
    ll0 = -0.5 * np.sum((x[0].astype(np.float64) / SD_X) ** 2) - D * (
        math.log(SD_X) + 0.5 * math.log(2 * math.pi)
    )
    print(
        f"image 0 (no object) logp - hand value (float64): {logp[0] - (math.log(0.5) + ll0):.2e} "
        "(float32 rounding of the 2500-pixel sum)"
    )


if __name__ == "__main__":
    main()
