"""Layer usage: how much each block contributes, in network order (the paper's claim).

Works for any model that keeps the usage contract of :mod:`common.models` (the MLP
families and the convolutional trunk):

* ``model.with_taps(x) -> (output, [taps per stage])``, where each stage's taps are
  ``{"l1": (blocks, batch), "feat": (blocks, batch, channels)}``, reduced inside the scan
  (a usage pass never holds every activation map);
* ``usage_mode`` (``glonet``, ``residual`` or ``plain``), ``num_blocks``,
  ``stage_boundaries`` and ``param_paths`` (network order);
* for GloNet, ``readout(params, batch_stats) -> ([R_1, ..., R_S], bias)``: the linear map from a
  stage's pooled block output to the output. The head and every carry map are linear, so
  ``output = bias + sum_i feat_i @ R_stage(i)`` exactly.

:func:`compute_usage` returns, over a held-out split:

* ``l1[i]``: mean over examples of mean ``|x_i|`` of block ``i``'s used term (GloNet: the
  summed term; ResNet: the residual branch; plain: the activation);
* ``param_l1``: the L1 norm (sum of ``|w|``) of every layer's parameters, network order;
* ``stage_boundaries``: the first block index of every stage;
* for GloNet: ``share[i]`` = mean over examples of ``mean |feat_i @ R|``, normalised to
  sum to 1; ``cumulative_share``; ``blocks_used``, the smallest ``k`` whose first ``k``
  blocks carry ``threshold`` (95%) of the head's output; ``early_exit``, the task metrics
  of the output computed from the first ``k`` blocks only, for every ``k`` (the authors'
  "tunable precision"); and ``blocks_needed``, the smallest ``k`` whose early-exit
  selection metric is within a stated tolerance of the full model's (the same precision
  read as a depth);
* for GloNet, given a ``reference`` split (the training examples, evaluation mode):
  ``early_exit_mean`` and ``blocks_needed_mean``, the same with every left-out block
  ``i > k`` replaced by its mean contribution ``E_ref[feat_i @ R]`` instead of zero. A
  prefix of the sum lacks the left-out blocks' *average* output as well as their
  per-example information; ``early_exit`` reads that average as zero, which a head that
  relies on it (any bias or norm offset tuned to the whole sum) turns into a constant
  error. Both are exact at ``k = L`` (up to float rounding, the full model).

``blocks_used`` measures where the head's output *mass* sits; ``blocks_needed`` measures
how many blocks the *predictions* need. Blocks with a small but non-zero share can still
be unnecessary for accuracy, so ``blocks_needed`` is the one that carries the paper's
self-regulation claim ("deeper blocks are not used"); both are reported.

It runs as its own jitted pass over padded batches, so the train step is unchanged.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.data.arrays import Split, pad_to_batches
from common.data.augment import Preprocess
from common.data.augment import identity_preprocess as _identity
from common.train import distributed, parallel
from common.train.state import TrainState, model_variables
from common.train.tasks import Task
from common.train.trainer import EvalSplit

USAGE_FILE = "usage.json"
# Training batches run in train mode to estimate batch-norm statistics before the usage
# of an untrained model is measured (the running statistics at init are mean 0, var 1,
# which describe a network that never existed). With momentum 0.9, 50 batches leave
# 0.9**50 = 0.5% of the initial values.
BN_WARMUP_BATCHES = 50


def _masked_sum(values, mb):  # sum over the batch axis (last), padded rows excluded
  return jnp.sum(jnp.where(mb > 0, values, 0.0), axis=-1)


def _contributions(variables, xb, maps, *, model, preprocess: Preprocess):
  """``(taps, contrib)``: a GloNet's taps and every block's exact share ``feat_i @ R`` of
  the output, ``(L, batch, out)``."""
  _, taps = model.apply(variables, preprocess(None, xb, False), method="with_taps")
  contrib = jnp.concatenate(
      [jnp.einsum("lbc,co->lbo", t["feat"], r) for t, r in zip(taps, maps, strict=True)])
  return taps, contrib


def _mean_contributions(variables, x, *, model, preprocess: Preprocess, batch_size: int,
                        batch_sharding) -> jax.Array:
  """Each block's contribution to a GloNet's output summed over the inputs ``x``, ``(L, out)``.

  ``x`` is read in place (on device, unpadded, e.g. the trainer's copy of the training
  inputs): each batch gathers its rows by index, the last one's surplus rows repeat the
  last example and are masked, so no padded copy of the split is ever made.
  """
  maps, _ = model.readout(variables["params"], variables.get("batch_stats"))
  n = x.shape[0]

  def body(acc, start):
    index = start + jnp.arange(batch_size)
    xb = x[jnp.minimum(index, n - 1)]
    if batch_sharding is not None:
      xb = jax.lax.with_sharding_constraint(xb, batch_sharding)
    _, contrib = _contributions(variables, xb, maps, model=model, preprocess=preprocess)
    return acc + jnp.sum(jnp.where((index < n)[None, :, None], contrib, 0.0), axis=1), None

  zeros = jnp.zeros((model.num_blocks, maps[0].shape[-1]), jnp.float32)
  sums, _ = jax.lax.scan(body, zeros, jnp.arange(0, n, batch_size))
  return sums


def _usage_sums(variables, x, y, mask, tail, *, model, task: Task, glonet: bool,
                preprocess: Preprocess) -> dict[str, Any]:
  """Masked sums over all batches of the per-block statistics.

  ``tail`` (GloNet, optional): ``(L, out)``, row ``k - 1`` the mean contribution of blocks
  ``k + 1..L``, added to the first ``k`` blocks' output for the ``exitm_`` curve.
  """
  if glonet:
    maps, bias = model.readout(variables["params"], variables.get("batch_stats"))

  def batch_stats(xb, yb, mb):
    if not glonet:
      _, taps = model.apply(variables, preprocess(None, xb, False), method="with_taps")
    else:
      taps, contrib = _contributions(variables, xb, maps, model=model, preprocess=preprocess)
    l1 = jnp.concatenate([t["l1"] for t in taps], axis=0)  # (L, B)
    out = {"l1": _masked_sum(l1, mb)}
    if glonet:
      out["contribution"] = _masked_sum(jnp.mean(jnp.abs(contrib), -1), mb)
      prefix = jnp.cumsum(contrib, axis=0) + bias  # output of the first k blocks, all k
      exits = {"exit": prefix}
      if tail is not None:
        exits["exitm"] = prefix + tail[:, None, :]
      for kind, outputs in exits.items():
        per_k = jax.vmap(lambda o: task.per_example(o, yb))(outputs)
        for name, values in per_k.items():
          out[f"{kind}_{name}"] = _masked_sum(values, mb)
    return out

  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       jax.eval_shape(batch_stats, x[0], y[0], mask[0]))
  sums, _ = jax.lax.scan(
      lambda acc, inputs: (jax.tree.map(jnp.add, acc, batch_stats(*inputs)), None),
      zeros, (x, y, mask))
  return sums


def param_l1_by_layer(params: dict[str, Any], paths: Sequence[Sequence[str]]
                      ) -> list[dict[str, Any]]:
  """L1 norm of each layer's parameters in network order.

  Args:
    params: the model parameters.
    paths: parameter paths in network order (``model.param_paths``); a path whose
      sub-tree holds a scanned stack (a ``scan`` entry) gives one row per block, named
      ``path[i]``. Missing paths are skipped. Dict order is not trusted: checkpoint round
      trips may sort keys.

  Returns:
    ``[{"layer": name, "l1": value}, ...]`` in network order.
  """
  rows = []
  for path in paths:
    tree = params
    for key in path:
      tree = tree.get(key) if isinstance(tree, dict) else None
      if tree is None:
        break
    if tree is None:
      continue
    name = "/".join(path)
    leaves = jax.tree.leaves(tree)
    if "scan" in tree:
      per_block = sum(np.abs(np.asarray(leaf)).reshape(leaf.shape[0], -1).sum(1)
                      for leaf in leaves)
      rows.extend({"layer": f"{name}[{i}]", "l1": float(v)} for i, v in enumerate(per_block))
    else:
      total = sum(np.abs(np.asarray(leaf)).sum() for leaf in leaves)
      rows.append({"layer": name, "l1": float(total)})
  return rows


def blocks_needed(curve: Sequence[float], full: float, task: Task) -> int | None:
  """Smallest ``k`` whose early-exit selection metric is within tolerance of ``full``.

  Args:
    curve: the early-exit selection metric for ``k = 1..L``.
    full: the full model's value of that metric.
    task: gives the metric's direction and the tolerance (``task.exit_tolerance``:
      absolute for accuracy, relative for an error).

  Returns:
    ``k`` (1-based), or None when the curve holds no finite value.
  """
  tol = task.exit_tolerance
  for k, value in enumerate(curve, start=1):
    if not np.isfinite(value):
      continue
    if task.selection_mode == "max" and value >= full - tol - 1e-12:
      return k
    if task.selection_mode == "min" and value <= full * (1 + tol) + 1e-12:
      return k
  return None


def warm_batch_stats(state: TrainState, x: jax.Array, *, batch_size: int,
                     num_batches: int = BN_WARMUP_BATCHES,
                     preprocess: Preprocess | None = None) -> TrainState:
  """Estimates batch-norm running statistics with train-mode passes, no parameter update.

  Args:
    state: the state whose ``batch_stats`` to estimate (returned changed; the caller
      keeps the original for training).
    x: training inputs; the first ``num_batches * batch_size`` (cycled) are used.
    batch_size: examples per pass.
    num_batches: number of passes.
    preprocess: turns stored inputs into model inputs (evaluation mode: no augmentation).

  Returns:
    ``state`` with the estimated ``batch_stats``.
  """
  if not state.batch_stats:
    return state
  preprocess = preprocess or _identity
  n = x.shape[0]
  batch_size = min(batch_size, n)

  @jax.jit
  def warm(params, stats, x):
    def body(stats, i):
      idx = (i * batch_size + jnp.arange(batch_size)) % n
      xb = preprocess(None, jnp.take(x, idx, axis=0), False)
      _, updates = state.apply_fn({"params": params, "batch_stats": stats}, xb, train=True,
                                  mutable=["batch_stats"])
      return updates["batch_stats"], None
    stats, _ = jax.lax.scan(body, stats, jnp.arange(num_batches))
    return stats

  return state.replace(batch_stats=warm(state.params, state.batch_stats, x))


def compute_usage(
    state: TrainState,
    split: Split | EvalSplit,
    task: Task,
    model: Any,
    *,
    batch_size: int = 500,
    threshold: float = 0.95,
    preprocess: Preprocess | None = None,
    reference: Split | jax.Array | None = None,
) -> dict[str, Any]:
  """Layer usage of ``state``'s model on ``split``; see the module docstring.

  Args:
    state: a train state of ``model``.
    split: the held-out examples (the test set): a split, or the trainer's copy of it,
      already padded to whole batches and on the devices (read as it is, in its own
      batches; ``batch_size`` then applies to the reference pass only).
    task: gives the metrics of the early-exit curve and ``blocks_needed``'s tolerance.
    model: the module (keeps the usage contract above).
    batch_size: examples per batch of the usage pass.
    threshold: cumulative share that defines ``blocks_used``.
    preprocess: turns stored inputs into model inputs (evaluation mode).
    reference: GloNet: the examples (the training split) whose mean contribution of each
      block stands in for the blocks an early exit leaves out (``early_exit_mean``): a
      split, or its stored inputs already on device and replicated (the trainer's copy,
      read in place); None: no such curve.

  Returns:
    A JSON-ready dict.
  """
  glonet = model.usage_mode == "glonet"
  preprocess = preprocess or _identity
  variables = model_variables(state)
  # Split over every device as evaluation is: each holds and runs its slice of each batch.
  mesh = parallel.device_mesh()
  sharding = parallel.batched_split_sharding(mesh)
  replicated = parallel.shardings(mesh)[0]
  devices = mesh.size if mesh is not None else 1
  tail, ref_count = None, 0
  if glonet and reference is not None and len(reference):
    ref_x = reference if isinstance(reference, jax.Array) else distributed.put(
        reference.x, replicated)
    ref_count = int(ref_x.shape[0])
    per_batch = -(-batch_size // devices) * devices  # a multiple of the device count
    sums = jax.jit(functools.partial(
        _mean_contributions, model=model, preprocess=preprocess, batch_size=per_batch,
        batch_sharding=parallel.shardings(mesh)[1]), out_shardings=replicated)(variables, ref_x)
    mean = np.asarray(jax.device_get(sums), np.float64) / ref_count
    # Row k - 1: the blocks after the first k, i.e. the reverse cumulative sum shifted by one.
    after = np.cumsum(mean[::-1], axis=0)[::-1]
    tail = distributed.put(
        np.concatenate([after[1:], np.zeros_like(after[:1])]).astype(np.float32), replicated)
  if isinstance(split, EvalSplit):  # no second padded copy of the split on the devices
    x, y, mask, count = split.x, split.y, split.mask, float(split.size)
  else:
    host = pad_to_batches(split, batch_size, devices)
    x, y, mask = (distributed.put(a, sharding) for a in host)
    count = float(host[2].sum())
  run = jax.jit(functools.partial(_usage_sums, model=model, task=task, glonet=glonet,
                                  preprocess=preprocess),
                out_shardings=replicated)
  sums = jax.device_get(run(variables, x, y, mask, tail))
  result: dict[str, Any] = {
      "examples": int(count),
      "num_blocks": int(len(sums["l1"])),
      "mode": model.usage_mode,
      "stage_boundaries": list(model.stage_boundaries),
      "l1": (np.asarray(sums["l1"]) / count).tolist(),
      "param_l1": param_l1_by_layer(jax.device_get(state.params), model.param_paths),
  }
  if glonet:
    contribution = np.asarray(sums["contribution"]) / count
    total = contribution.sum()
    share = contribution / total if total > 0 else np.full_like(contribution, np.nan)
    cumulative = np.cumsum(share)
    reached = np.nonzero(cumulative >= threshold - 1e-9)[0]
    exits = {name: (np.asarray(sums[f"exit_{name}"]) / count).tolist()
             for name in task.metric_names}
    curve = exits[task.selection_metric]
    result.update({
        "contribution": contribution.tolist(),
        "share": share.tolist(),
        "cumulative_share": cumulative.tolist(),
        "threshold": threshold,
        "blocks_used": int(reached[0] + 1) if len(reached) else None,
        "early_exit": {"k": list(range(1, len(share) + 1)), **exits},
        "blocks_needed": blocks_needed(curve, curve[-1], task),
        "blocks_needed_metric": task.selection_metric,
        "blocks_needed_tolerance": task.exit_tolerance,
        "blocks_needed_rule": task.exit_tolerance_rule,
    })
    if tail is not None:
      exits_mean = {name: (np.asarray(sums[f"exitm_{name}"]) / count).tolist()
                    for name in task.metric_names}
      result.update({
          "early_exit_mean": {"k": list(range(1, len(share) + 1)), **exits_mean,
                              "reference_examples": ref_count},
          "blocks_needed_mean": blocks_needed(exits_mean[task.selection_metric], curve[-1],
                                              task),
      })
  return result
