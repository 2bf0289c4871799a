"""The LSTM policy that proposes genotypes: sample, log_prob_and_entropy.

The controller follows the 2019 search code that found the released architectures (paper.md §2): a 2-layer
LSTM (hidden 100) starts from a learned input, runs 4 warm-up steps (one per encoder output, nothing
sampled), then makes 19 decisions, each read off the LSTM output by its own linear head:

    in1, in2 of blocks 1..3   heads of 4, 4, 5, 5, 6, 6 choices (the decoder pool grows by one per block)
    op0                       the shared op head (11 ops)
    for each of the 3 pairs   pos1, pos2 (heads of 2, 2, 5, 5, 8, 8), then op1, op2 (the shared op head)

The LSTM input of every step is the LSTM's previous *output*; the sampled token is never fed back. So the
hidden trajectory, and with it every decision's logits, depends on the parameters only, and the policy is a
product of 19 independent categoricals. fdn uses that: `decision_logits` runs the 23 LSTM steps once per
parameter set and every sample / log-prob / entropy is a gather on that one (19, 11) table. This is exact,
not an approximation: running the LSTM again per genotype would feed it the very same inputs.

Decisions are made in the LSTM order above; genotypes travel as fdn's flattened action vectors
``[0, op0, (p1, p2, o1, o2) x 3, (i1, i2) x 3]`` (`fdn.genotype.Genotype.to_actions`).

Entropy is that of the whole policy: the sum over the 19 decisions of each categorical's entropy, which is
what the official ``evaluate`` returns (35.0928 at the parity fixture's seed, the same for every genotype,
since the distributions do not depend on the samples).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fdn import genotype as gt
from fdn.models import names as N

HIDDEN_SIZE = 100
NUM_LAYERS = 2
WARMUP_STEPS = gt.NUM_ENCODER_OUTPUTS
INIT_RANGE = 0.1

# Number of choices of each decision, in the order the LSTM makes them.
DECISION_CHOICES = (
    *[c for c in gt.BLOCK_INPUT_CHOICES for _ in range(2)],
    gt.NUM_OPS,
    *[v for c in gt.CELL_POSITION_CHOICES for v in (c, c, gt.NUM_OPS, gt.NUM_OPS)],
)
NUM_DECISIONS = len(DECISION_CHOICES)  # 19; the action vector's leading constant 0 makes 20 entries
MAX_CHOICES = max(DECISION_CHOICES)
_CONN = 2 * gt.NUM_BLOCKS  # decisions 0..5 are block inputs, 6 is op0, 7..18 the pairs
# DECISION_ORDER[k] = index in the action vector of the k-th decision the LSTM makes.
DECISION_ORDER = np.array([gt.ACTION_SIZE - _CONN + k for k in range(_CONN)] + list(range(1, _CONN + 8)))
_VALID = np.arange(MAX_CHOICES)[None, :] < np.array(DECISION_CHOICES)[:, None]  # (19, 11)

Params = Any


def _uniform(key, shape, dtype=jnp.float32):
    """Every parameter (weights, biases, start input) is drawn from U(-0.1, 0.1), as in the official code."""
    return flat_random(jax.random.uniform, key, shape, dtype, -INIT_RANGE, INIT_RANGE)


def flat_random(fn, key, shape, *args, **kwargs):
    """``fn(key, shape, ...)`` drawn as a flat vector and reshaped.

    Same distribution; the reason is compile time: with JAX's partitionable threefry, XLA:CPU takes ~5 s to
    compile a draw of a 2-D or 3-D shape and ~0.3 s for a 1-D one (jax 0.10, this 2-core CPU).
    """
    return fn(key, (math.prod(shape),), *args, **kwargs).reshape(shape)


class LSTMLayer(nn.Module):
    """The parameters of one PyTorch-layout LSTM layer: gates ``x @ w_ih + h @ w_hh + b`` in order i, f, g, o.

    Kept in PyTorch's gate order and with a single bias (``b_ih + b_hh``) so that an official state dict
    converts by transposition and one addition (`fdn.convert.controller_params_from_torch`).
    """

    in_features: int
    features: int

    def setup(self):
        self.w_ih = self.param("w_ih", _uniform, (self.in_features, 4 * self.features))
        self.w_hh = self.param("w_hh", _uniform, (self.features, 4 * self.features))
        # PyTorch has two biases, each U(-0.1, 0.1); only their sum matters, and it is what we store.
        self.b = self.param("b", lambda k, s: _uniform(k, (2,) + s).sum(0), (4 * self.features,))

    def fused(self):
        """``([w_ih; w_hh], b)``: a step is then one ``[x, h]`` matmul (half the dots of two, which the
        backward pass of 23 steps feels)."""
        return jnp.concatenate([self.w_ih, self.w_hh], 0), self.b


def lstm_step(weights, x, carries):
    """One step of the stacked LSTM; ``weights`` is a list of `LSTMLayer.fused`, ``carries`` of (h, c)."""
    new = []
    for (w, b), (h, c) in zip(weights, carries):
        gates = jnp.concatenate([x, h], -1) @ w + b
        n = h.shape[-1]
        i, f, o = (jax.nn.sigmoid(gates[..., k * n : (k + 1) * n]) for k in (0, 1, 3))
        c = f * c + i * jnp.tanh(gates[..., 2 * n : 3 * n])
        x = h = o * jnp.tanh(c)
        new.append((h, c))
    return x, new


class Linear(nn.Module):
    """A decision head's parameters (``x @ kernel + bias``); the controller applies all heads in one
    matmul."""

    in_features: int
    features: int

    def setup(self):
        self.kernel = self.param(N.KERNEL, _uniform, (self.in_features, self.features))
        self.bias = self.param(N.BIAS, _uniform, (self.features,))


# The heads in the order their columns are concatenated: conn_0..5, pos_0..5, op.
_HEAD_SIZES = (*DECISION_CHOICES[:_CONN], *[c for c in gt.CELL_POSITION_CHOICES for _ in range(2)], gt.NUM_OPS)
_HEAD_OFFSETS = np.cumsum((0,) + _HEAD_SIZES)
_OP_HEAD = len(_HEAD_SIZES) - 1
# Which head each decision reads: conn_0..5, op, then per pair pos_{2j}, pos_{2j+1}, op, op.
_DECISION_HEAD = (
    *range(_CONN),
    _OP_HEAD,
    *[h for j in range(gt.NUM_PAIRS) for h in (_CONN + 2 * j, _CONN + 2 * j + 1, _OP_HEAD, _OP_HEAD)],
)
# _GATHER[k, j] = column of choice j of decision k in the concatenated head output (0 where invalid).
_GATHER = np.where(_VALID, _HEAD_OFFSETS[list(_DECISION_HEAD)][:, None] + np.arange(MAX_CHOICES)[None], 0)


class Controller(nn.Module):
    """Returns the (19, 11) decision-logit table; entries past a decision's number of choices are -inf.

    Parameter names: ``start``, ``lstm_{0,1}`` (w_ih, w_hh, b), ``conn_{0..5}``, ``pos_{0..5}`` and the shared
    ``op`` head (kernel, bias).
    """

    hidden_size: int = HIDDEN_SIZE
    num_layers: int = NUM_LAYERS

    def setup(self):
        n = self.hidden_size
        self.start = self.param("start", _uniform, (n,))
        self.lstm = [LSTMLayer(n, n) for _ in range(self.num_layers)]
        self.conn = [Linear(n, c) for c in _HEAD_SIZES[:_CONN]]
        self.pos = [Linear(n, c) for c in _HEAD_SIZES[_CONN:_OP_HEAD]]
        self.op = Linear(n, gt.NUM_OPS)

    def __call__(self):
        weights = [layer.fused() for layer in self.lstm]
        zeros = jnp.zeros((self.hidden_size,), self.start.dtype)

        def step(carry, _):
            x, carries = carry
            x, carries = lstm_step(weights, x, carries)
            return (x, carries), x  # the next input is this output, whatever gets sampled

        # A scan, not an unrolled loop: the same speed at run time, and several times faster to compile.
        carry = (self.start, [(zeros, zeros)] * self.num_layers)
        _, outputs = jax.lax.scan(step, carry, length=WARMUP_STEPS + NUM_DECISIONS)
        outputs = outputs[WARMUP_STEPS:]  # the warm-up steps decide nothing
        heads = [*self.conn, *self.pos, self.op]
        kernel = jnp.concatenate([h.kernel for h in heads], 1)
        bias = jnp.concatenate([h.bias for h in heads])
        logits = jnp.take_along_axis(outputs @ kernel + bias, jnp.asarray(_GATHER), axis=1)
        return jnp.where(_VALID, logits, -jnp.inf)


_MODEL = Controller()


@jax.jit
def init_params(key: jax.Array) -> Params:
    """Fresh controller parameters (a dict of arrays), every entry ~ U(-0.1, 0.1).

    The same distribution as ``Controller().init(key)``, drawn as one flat vector that is cut into the
    parameters: one random draw instead of 35 compiles several times faster on XLA:CPU (see `flat_random`).
    """
    shapes = jax.eval_shape(_MODEL.init, key)[N.PARAMS]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    # The LSTM bias `b` stands for PyTorch's b_ih + b_hh: two draws summed.
    draws = [2 if path[-1].key == "b" else 1 for path, _ in leaves]
    sizes = [math.prod(leaf.shape) for _, leaf in leaves]
    flat = jax.random.uniform(key, (sum(d * n for d, n in zip(draws, sizes)),), jnp.float32, -INIT_RANGE, INIT_RANGE)
    out, offset = [], 0
    for (_, leaf), d, n in zip(leaves, draws, sizes):
        out.append(flat[offset : offset + d * n].reshape((d,) + leaf.shape).sum(0))
        offset += d * n
    return jax.tree_util.tree_unflatten(treedef, out)


def decision_logits(params: Params) -> jax.Array:
    """The (19, 11) logit table, one row per decision in LSTM order, invalid choices at -inf."""
    return _MODEL.apply({N.PARAMS: params})


def decision_log_probs(params: Params) -> jax.Array:
    """Row-wise log-softmax of `decision_logits` (invalid entries stay -inf)."""
    return jax.nn.log_softmax(decision_logits(params), axis=-1)


@jax.jit
def decision_probs(params: Params) -> jax.Array:
    """The (19, 11) table of decision probabilities (0 past a decision's choices), e.g. to plot the policy."""
    return jnp.exp(decision_log_probs(params))


def policy_entropy(log_probs: jax.Array) -> jax.Array:
    """Sum over decisions of each categorical's entropy (the official ``evaluate``'s entropy)."""
    p = jnp.exp(log_probs)
    return -jnp.sum(jnp.where(_VALID, p * jnp.where(_VALID, log_probs, 0.0), 0.0))


def decisions_to_actions(decisions: jax.Array) -> jax.Array:
    """(..., 19) decisions in LSTM order -> (..., 20) action vectors in fdn's flattened layout."""
    lead = jnp.zeros(decisions.shape[:-1] + (1,), decisions.dtype)
    return jnp.concatenate([lead, decisions[..., _CONN:], decisions[..., :_CONN]], axis=-1)


def actions_to_decisions(actions: jax.Array) -> jax.Array:
    """(..., 20) action vectors -> (..., 19) decisions in LSTM order (the leading constant 0 is dropped)."""
    return actions[..., DECISION_ORDER]


def log_prob_of_actions(log_probs: jax.Array, actions: jax.Array) -> jax.Array:
    """Log-probability of each (n, 20) action vector under the (19, 11) log-prob table; vmapped gather."""
    rows = jnp.arange(NUM_DECISIONS)

    def one(a):
        return jnp.sum(log_probs[rows, actions_to_decisions(a)])

    return jax.vmap(one)(actions)


@functools.partial(jax.jit, static_argnums=2)
def sample(params: Params, key: jax.Array, n: int):
    """n genotypes from the policy in one jitted call.

    Returns ``(actions (n, 20) int32, log_probs (n,) float32, entropies (n,) float32)``; the actions are in
    fdn's flattened layout and always valid (each decision draws only among its own choices).
    """
    log_probs = decision_log_probs(params)
    # Gumbel-max: jax.random.categorical's own draw, but from a flat noise vector (see `flat_random`).
    noise = flat_random(jax.random.gumbel, key, (n, NUM_DECISIONS, MAX_CHOICES))
    decisions = jnp.argmax(log_probs + noise, axis=-1).astype(jnp.int32)
    actions = decisions_to_actions(decisions)
    entropy = policy_entropy(log_probs)
    return actions, log_prob_of_actions(log_probs, actions), jnp.full((n,), entropy)


@jax.jit
def _log_prob_and_entropy(params, actions):
    log_probs = decision_log_probs(params)
    entropy = policy_entropy(log_probs)
    return log_prob_of_actions(log_probs, actions), jnp.full(actions.shape[:1], entropy)


def as_actions(genotypes: Any) -> np.ndarray:
    """An (n, 20) int32 array from an action array or a sequence of Genotypes / nested lists / texts.

    Lists are validated through `fdn.genotype.parse` so an invalid genotype is an error, not an
    out-of-range gather.
    """
    if hasattr(genotypes, "shape") and getattr(genotypes, "ndim", 0) == 2:
        actions = np.asarray(genotypes, dtype=np.int32)
        if actions.shape[1] != gt.ACTION_SIZE:
            raise gt.GenotypeError(f"action arrays are (n, {gt.ACTION_SIZE}), got {actions.shape}")
        bad = (actions[:, DECISION_ORDER] < 0) | (actions[:, DECISION_ORDER] >= np.array(DECISION_CHOICES))
        if bad.any():
            row = int(np.argwhere(bad.any(1))[0, 0])
            gt.Genotype.from_actions(actions[row])  # raises with the field's name
        return actions
    if isinstance(genotypes, (gt.Genotype, str)):
        genotypes = [genotypes]
    rows = [gt.parse(g).to_actions() for g in genotypes]
    return np.asarray(rows, dtype=np.int32).reshape(len(rows), gt.ACTION_SIZE)


def log_prob_and_entropy(params: Params, genotypes: Any) -> tuple[jax.Array, jax.Array]:
    """Log-prob and entropy of each genotype, one jitted vmapped call: returns two (n,) float32 arrays.

    ``genotypes`` is an (n, 20) int array of action vectors or a sequence of `Genotype` objects, nested lists
    or genotype texts. The entropy is the policy's (sum of the 19 decisions' entropies), equal for all n.
    The batch is padded to a power of two (at least 8) so that varying n does not recompile every time.
    """
    actions = as_actions(genotypes)
    n = actions.shape[0]
    bucket = max(8, 1 << max(n - 1, 0).bit_length())
    if bucket == n:
        return _log_prob_and_entropy(params, actions)
    padded = np.zeros((bucket, gt.ACTION_SIZE), np.int32)
    padded[:n] = actions
    log_probs, entropies = _log_prob_and_entropy(params, padded)
    return log_probs[:n], entropies[:n]
