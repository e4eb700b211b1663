"""The one renaming table between our parameter tree, HF (PyTorch) and Google TF1 names,
with the transposes and 3-D attention reshapes; also flatten/unflatten and (un)stack_layers.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any
from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from biobert_jax.config import BertConfig
from biobert_jax.tree import flatten, unflatten  # re-exported: checkpoints.flatten

# How our array folds to the TF1 2-D/1-D layout.
PLAIN, QKV_KERNEL, QKV_BIAS, ATTN_OUT_KERNEL = "plain", "qkv_kernel", "qkv_bias", "attn_out_kernel"


@dataclasses.dataclass(frozen=True)
class Rule:
  ours: str  # '/'-joined path in our params tree (with the top-level "encoder" / "cls")
  hf: str  # HF BertModel / BertForPreTraining name, without the "bert." prefix
  tf: str  # Google's TF1 variable name
  layout: str = PLAIN
  hf_transposed: bool = False
  tf_transposed: bool = False


def _dense(ours: str, hf: str, tf: str, kernel_layout: str = PLAIN,
           bias_layout: str = PLAIN) -> list[Rule]:
  return [Rule(f"{ours}/kernel", f"{hf}.weight", f"{tf}/kernel", kernel_layout, True),
          Rule(f"{ours}/bias", f"{hf}.bias", f"{tf}/bias", bias_layout)]


def _layer_norm(ours: str, hf: str, tf: str) -> list[Rule]:
  return [Rule(f"{ours}/scale", f"{hf}.weight", f"{tf}/gamma"),
          Rule(f"{ours}/bias", f"{hf}.bias", f"{tf}/beta")]


def _embeddings() -> list[Rule]:
  rules = [Rule(f"encoder/embeddings/{n}/embedding", f"embeddings.{n}.weight",
                f"bert/embeddings/{n}")
           for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
  return rules + _layer_norm("encoder/embeddings/LayerNorm", "embeddings.LayerNorm",
                             "bert/embeddings/LayerNorm")


def _layer(i: int) -> list[Rule]:
  ours, hf, tf = f"encoder/encoder/layer_{i}", f"encoder.layer.{i}", f"bert/encoder/layer_{i}"
  rules = []
  for proj in ("query", "key", "value"):
    rules += _dense(f"{ours}/attention/self/{proj}", f"{hf}.attention.self.{proj}",
                    f"{tf}/attention/self/{proj}", QKV_KERNEL, QKV_BIAS)
  for block in ("attention/output", "intermediate", "output"):
    dot = block.replace("/", ".")
    rules += _dense(f"{ours}/{block}/dense", f"{hf}.{dot}.dense", f"{tf}/{block}/dense",
                    ATTN_OUT_KERNEL if block == "attention/output" else PLAIN)
    if block != "intermediate":
      rules += _layer_norm(f"{ours}/{block}/LayerNorm", f"{hf}.{dot}.LayerNorm",
                           f"{tf}/{block}/LayerNorm")
  return rules


def _pooler() -> list[Rule]:
  return _dense("encoder/pooler/dense", "pooler.dense", "bert/pooler/dense")


def _pretraining_heads() -> list[Rule]:
  p = "cls/predictions"
  return (_dense(f"{p}/transform/dense", f"{p.replace('/', '.')}.transform.dense",
                 f"{p}/transform/dense")
          + _layer_norm(f"{p}/transform/LayerNorm", "cls.predictions.transform.LayerNorm",
                        f"{p}/transform/LayerNorm")
          + [Rule(f"{p}/output_bias", "cls.predictions.bias", f"{p}/output_bias"),
             Rule("cls/seq_relationship/kernel", "cls.seq_relationship.weight",
                  "cls/seq_relationship/output_weights", PLAIN, True, True),
             Rule("cls/seq_relationship/bias", "cls.seq_relationship.bias",
                  "cls/seq_relationship/output_bias")])


def rules(config: BertConfig, *, heads: bool) -> list[Rule]:
  """All rules for a model with `config` (encoder, plus the pre-training heads if `heads`)."""
  out = _embeddings()
  for i in range(config.num_hidden_layers):
    out += _layer(i)
  out += _pooler()
  if heads:
    out += _pretraining_heads()
  return out


# ---- task heads of fine-tuned checkpoints ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TaskHead:
  """One fine-tuned output layer: its external kernel/bias names -> our head subtree.

  Every head listed here stores its kernel [num_outputs, H] (torch orientation; Google's
  run_squad / run_classifier / BioBERT's run_ner and run_re create `output_weights` as
  [num_labels, hidden] and multiply with transpose_b=True); ours is a Dense [H, num_outputs].
  """

  ours: str  # top-level head scope in our task models
  kernel: str
  bias: str
  source: str  # what wrote it, for reports


# Row 0 of run_squad's cls/squad/output_weights gives the start logits and row 1 the end
# logits (`tf.unstack(tf.transpose(logits, [2, 0, 1]))`), the order of our qa_outputs.
TASK_HEADS = {
    "tf": (TaskHead("qa_outputs", "cls/squad/output_weights", "cls/squad/output_bias",
                    "run_squad (BioBERT+SQuAD)"),
           TaskHead("classifier", "output_weights", "output_bias",
                    "run_classifier / BioBERT run_re / run_ner")),
    "hf": (TaskHead("qa_outputs", "qa_outputs.weight", "qa_outputs.bias",
                    "BertForQuestionAnswering"),
           TaskHead("classifier", "classifier.weight", "classifier.bias",
                    "BertForSequenceClassification / BertForTokenClassification")),
}


def task_head_arrays(head: TaskHead, kernel: np.ndarray, bias: np.ndarray,
                     hidden_size: int) -> tuple[dict[str, np.ndarray] | None, str]:
  """({"kernel": [H, C], "bias": [C]} or None, why not) for one head's external arrays."""
  kernel, bias = np.asarray(kernel), np.asarray(bias)
  if kernel.ndim != 2 or kernel.shape[1] != hidden_size:
    return None, (f"{head.kernel} has shape {list(kernel.shape)}, expected "
                  f"[num_outputs, {hidden_size}] (hidden_size)")
  if bias.shape != (kernel.shape[0],):
    return None, (f"{head.bias} has shape {list(bias.shape)}, expected [{kernel.shape[0]}] "
                  f"(rows of {head.kernel})")
  return {"kernel": np.ascontiguousarray(kernel.T), "bias": bias}, ""


def task_head_external(head: TaskHead, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Our {"kernel": [H, C], "bias": [C]} -> {head.kernel: [C, H], head.bias: [C]} (float32)."""
  kernel = np.asarray(jax.device_get(arrays["kernel"]), np.float32)
  bias = np.asarray(jax.device_get(arrays["bias"]), np.float32)
  return {head.kernel: np.ascontiguousarray(kernel.T), head.bias: bias}


@dataclasses.dataclass(frozen=True)
class HFTaskClass:
  """A transformers task class and how our task model maps onto it."""

  task: str  # our task family
  architecture: str
  head: str  # our head scope (a TASK_HEADS["hf"] entry)
  pooler: bool  # transformers builds this class with the pooler (add_pooling_layer)


HF_TASK_CLASSES = (
    HFTaskClass("ner", "BertForTokenClassification", "classifier", False),
    HFTaskClass("re", "BertForSequenceClassification", "classifier", True),
    HFTaskClass("qa", "BertForQuestionAnswering", "qa_outputs", False),
)


def hf_task_class(task: str = "", architecture: str = "") -> HFTaskClass | None:
  for entry in HF_TASK_CLASSES:
    if entry.task == task or entry.architecture == architecture:
      return entry
  return None


def hf_task_head(head: str) -> TaskHead:
  return next(h for h in TASK_HEADS["hf"] if h.ours == head)


# ---- HF keys that are not parameters, or duplicates of tied ones -----------------------------
HF_PREFIX = "bert."
# Buffers and tied copies: `decoder.weight` is the word-embedding table, `decoder.bias` the
# same tensor as `cls.predictions.bias` (transformers ties both).
HF_IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$|^cls\.predictions\.decoder\.")

# ---- TF1 variables that are optimizer state or bookkeeping, not model weights -----------------
TF_IGNORED = re.compile(
    r"(/adam_[mv]$|/Adam(_\d+)?$|/Momentum$|/LAMB(_\d+)?$|/lamb_[mv]$|^global_step$|"
    r"_power$|^BERTAdam|/ExponentialMovingAverage$|^good_steps$|^loss_scale$|"
    r"^current_loss_scale$)")


# ---- array layout -----------------------------------------------------------------------------
def tf_shape(layout: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The TF1-orientation shape of our array of `shape`."""
  if layout == QKV_KERNEL:  # [H, N, D] -> [H, N*D]
    return (shape[0], shape[1] * shape[2])
  if layout == QKV_BIAS:  # [N, D] -> [N*D]
    return (shape[0] * shape[1],)
  if layout == ATTN_OUT_KERNEL:  # [N, D, H] -> [N*D, H]
    return (shape[0] * shape[1], shape[2])
  return tuple(shape)


def external_shape(rule: Rule, shape: tuple[int, ...], fmt: str) -> tuple[int, ...]:
  """The shape that `fmt` ("hf" or "tf") stores for our array of `shape`."""
  s = tf_shape(rule.layout, shape)
  return s[::-1] if _transposed(rule, fmt) else s


def _transposed(rule: Rule, fmt: str) -> bool:
  if fmt == "hf":
    return rule.hf_transposed
  if fmt == "tf":
    return rule.tf_transposed
  raise ValueError(f"unknown checkpoint format {fmt!r}")


def from_external(rule: Rule, array: np.ndarray, shape: tuple[int, ...], fmt: str) -> np.ndarray:
  """Converts a checkpoint array to our layout `shape` (shape checked by the caller)."""
  if _transposed(rule, fmt):
    array = array.T
  return np.ascontiguousarray(array).reshape(shape)


def to_external(rule: Rule, array: np.ndarray, fmt: str) -> np.ndarray:
  """Converts our array to the layout `fmt` stores."""
  array = np.asarray(array).reshape(tf_shape(rule.layout, array.shape))
  if _transposed(rule, fmt):
    array = array.T
  return np.ascontiguousarray(array)


def _layer_containers(params: Mapping[str, Any]) -> Iterator[tuple[dict, str]]:
  """Yields (parent dict, key) of the `encoder` scope(s) that hold the layers.

  Accepts a BertEncoder tree ({"embeddings", "encoder", "pooler"}) or a model tree
  ({"encoder": <BertEncoder tree>, heads...}).
  """
  if "embeddings" in params and "encoder" in params:
    yield params, "encoder"
  elif isinstance(params.get("encoder"), Mapping) and "embeddings" in params["encoder"]:
    yield params["encoder"], "encoder"
  else:
    raise ValueError(f"not a BERT params tree (top-level keys {sorted(params)}); expected "
                     "'embeddings'+'encoder' or 'encoder' holding them")


def _xp(x: Any) -> Any:
  """numpy for host arrays, jax.numpy for device arrays (stays on device, keeps sharding)."""
  return jnp if isinstance(x, jax.Array) else np


def _copy_dicts(tree: Any) -> Any:
  return {k: _copy_dicts(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def stack_layers(params: Mapping[str, Any]) -> dict[str, Any]:
  """`layer_{i}` trees -> one `layer` tree with a leading layers axis (nn.scan form)."""
  params = _copy_dicts(params)
  for parent, key in _layer_containers(params):
    layers = parent[key]
    if "layer" in layers:
      continue  # already stacked
    names = sorted(layers, key=lambda n: int(n.rsplit("_", 1)[1]))
    if names != [f"layer_{i}" for i in range(len(names))]:
      raise ValueError(f"expected layer_0..layer_{len(names) - 1}, got {names}")
    flats = [flatten(layers[n]) for n in names]
    parent[key] = {"layer": unflatten({p: _xp(flats[0][p]).stack([f[p] for f in flats])
                                       for p in flats[0]})}
  return params


def unstack_layers(params: Mapping[str, Any]) -> dict[str, Any]:
  """One stacked `layer` tree (leading layers axis) -> `layer_{i}` trees."""
  params = _copy_dicts(params)
  for parent, key in _layer_containers(params):
    layers = parent[key]
    if "layer" not in layers:
      continue  # already unstacked
    flat = flatten(layers["layer"])
    n = {np.shape(v)[0] for v in flat.values()}
    if len(n) != 1:
      raise ValueError(f"stacked layer params disagree on the number of layers: {sorted(n)}")
    parent[key] = {f"layer_{i}": unflatten({p: v[i] for p, v in flat.items()})
                   for i in range(n.pop())}
  return params


def is_stacked(params: Mapping[str, Any]) -> bool:
  return any("layer" in parent[key] for parent, key in _layer_containers(params))
