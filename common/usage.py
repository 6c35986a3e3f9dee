"""Layer usage: how much each block contributes, in network order (the paper's claim).

For a model called with ``capture=True`` (it returns ``(output, used)`` with ``used`` of
shape ``(num_blocks, batch, features)``: GloNet's summed terms, a ResNet's residual
branches, a plain MLP's activations), :func:`compute_usage` returns, over a held-out split:

* ``l1[i]``: mean over examples of mean ``|x_i|`` of block ``i``'s used term;
* ``param_l1``: the L1 norm (sum of ``|w|``) of every layer's parameters, network order;
* for GloNet (the head is linear, so ``output = b + sum_i W x_i``):
  ``share[i]`` = mean over examples of ``mean |W x_i|`` normalised to sum to 1,
  ``cumulative_share``, ``blocks_used`` (smallest ``k`` whose cumulative share reaches
  ``threshold``, 95% by default), and ``early_exit``: the task metrics of
  ``head(x_1 + ... + x_k)`` for every ``k = 1..L`` (the authors' "tunable precision";
  cheap, because it is a cumulative sum of the per-block head contributions).

It runs as its own jitted pass over padded batches, so the train step is unchanged.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.data.arrays import Split, pad_to_batches
from common.train.state import TrainState, model_variables
from common.train.tasks import Task

USAGE_FILE = "usage.json"


def _usage_sums(state: TrainState, x, y, mask, task: Task, glonet: bool) -> dict[str, Any]:
  """Masked sums over all batches of the per-block statistics."""
  variables = model_variables(state)
  head = state.params["head"] if glonet else None

  def masked_sum(values, mb):  # sum over the batch axis (last), padded rows excluded
    return jnp.sum(jnp.where(mb > 0, values, 0.0), axis=-1)

  def batch_stats(xb, yb, mb):
    _, used = state.apply_fn(variables, xb, train=False, capture=True)
    used = used.reshape(used.shape[0], used.shape[1], -1)  # (L, B, D)
    out = {"l1": masked_sum(jnp.mean(jnp.abs(used), axis=-1), mb)}
    if glonet:
      contrib = jnp.einsum("lbd,do->lbo", used, head["kernel"])  # W x_i for every block
      out["contribution"] = masked_sum(jnp.mean(jnp.abs(contrib), -1), mb)
      prefix = jnp.cumsum(contrib, axis=0) + head["bias"]  # head(x_1 + ... + x_k), all k
      per_k = jax.vmap(lambda o: task.per_example(o, yb))(prefix)
      for name, values in per_k.items():
        out[f"exit_{name}"] = masked_sum(values, mb)
    return out

  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       jax.eval_shape(batch_stats, x[0], y[0], mask[0]))
  sums, _ = jax.lax.scan(
      lambda acc, inputs: (jax.tree.map(jnp.add, acc, batch_stats(*inputs)), None),
      zeros, (x, y, mask))
  return sums


_usage_jit = jax.jit(_usage_sums, static_argnames=("task", "glonet"))


def param_l1_by_layer(params: dict[str, Any], order: Sequence[str]) -> list[dict[str, Any]]:
  """L1 norm of each layer's parameters in network order.

  Args:
    params: the model parameters; top-level entries are layers, except entries holding a
      scanned stack (a ``scan`` sub-tree), whose leaves carry a leading block axis and
      give one entry per block.
    order: the top-level names in network order (``model.param_order``); dict order is
      not trusted, because checkpoint round trips may sort keys.

  Returns:
    ``[{"layer": name, "l1": value}, ...]`` in network order.
  """
  rows = []
  for name in order:
    if name not in params:
      continue
    tree = params[name]
    leaves = jax.tree.leaves(tree)
    if "scan" in tree:
      per_block = sum(np.abs(np.asarray(leaf)).reshape(leaf.shape[0], -1).sum(1)
                      for leaf in leaves)
      rows.extend({"layer": f"{name}[{i}]", "l1": float(v)} for i, v in enumerate(per_block))
    else:
      total = sum(np.abs(np.asarray(leaf)).sum() for leaf in leaves)
      rows.append({"layer": name, "l1": float(total)})
  return rows


def compute_usage(
    state: TrainState,
    split: Split,
    task: Task,
    *,
    glonet: bool,
    param_order: Sequence[str],
    batch_size: int = 500,
    threshold: float = 0.95,
) -> dict[str, Any]:
  """Layer usage of ``state``'s model on ``split``; see the module docstring.

  Args:
    state: a train state whose ``apply_fn`` supports ``capture=True``.
    split: the held-out examples (the test set).
    task: gives the metrics of the early-exit curve.
    glonet: the model's head reads the sum of the used terms (enables shares and exits).
    param_order: top-level parameter names in network order.
    batch_size: examples per batch of the usage pass.
    threshold: cumulative share that defines ``blocks_used``.

  Returns:
    A JSON-ready dict.
  """
  x, y, mask = (jnp.asarray(a) for a in pad_to_batches(split, batch_size))
  sums = jax.device_get(_usage_jit(state, x, y, mask, task, glonet))
  count = float(np.asarray(mask).sum())
  result: dict[str, Any] = {
      "examples": int(count),
      "num_blocks": int(len(sums["l1"])),
      "l1": (np.asarray(sums["l1"]) / count).tolist(),
      "param_l1": param_l1_by_layer(jax.device_get(state.params), param_order),
  }
  if glonet:
    contribution = np.asarray(sums["contribution"]) / count
    total = contribution.sum()
    share = contribution / total if total > 0 else np.full_like(contribution, np.nan)
    cumulative = np.cumsum(share)
    reached = np.nonzero(cumulative >= threshold - 1e-9)[0]
    result.update({
        "contribution": contribution.tolist(),
        "share": share.tolist(),
        "cumulative_share": cumulative.tolist(),
        "threshold": threshold,
        "blocks_used": int(reached[0] + 1) if len(reached) else None,
        "early_exit": {"k": list(range(1, len(share) + 1)),
                       **{name: (np.asarray(sums[f"exit_{name}"]) / count).tolist()
                          for name in task.metric_names}},
    })
  return result
