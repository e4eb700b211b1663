"""BERT's FLOPs and memory from its shapes, and a roofline step time.

Why analytic: XLA's `cost_analysis` counts a scanned layer body once, so its FLOPs are not
the step's; and the compiler's memory figure needs a reference to be judged against.

FLOPs (Kaplan et al. 2020, "Scaling laws", sec. 2.1; Narayanan et al. 2021, "Efficient
large-scale language model training on GPU clusters", eq. 3), per token and layer, forward:
2 x (4 H^2 + 2 H I) for the dense layers plus 4 L H for QK^T and AV; the MLM head
2 x (H^2 + H V) per predicted token; training is 3x the forward (backward = 2x) and full
rematerialisation adds one more encoder forward (4x). MFU counts the model's FLOPs (3x),
never the recomputation.

Activations saved for the backward pass, per layer (Korthikanti et al. 2022, "Reducing
activation recomputation in large transformer models", sec. 4.1, generalised to an
element size e and 1-byte dropout masks): s b h (16 e + 2) + a s^2 b (2 e + 1); bf16 gives
their 34 s b h + 5 a s^2 b. With tensor parallelism t the attention and MLP internals divide
by t, the layer norms and layer inputs do not. With remat, each layer keeps its input
(s b h e) and one layer's full set is live during its recomputation.

FSDP gathers each weight whole where it is used and reduce-scatters its gradient from a
whole one (Zhao et al. 2023, "PyTorch FSDP", sec. 3.2). A layer's weights are small
beside its activations, but BERT's word-embedding table is used at both ends of the step
(the lookup and the tied MLM projection): its gathered float32 copy and its whole gradient
are live together, 2 V H 4 bytes (one copy forward-only).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from biobert_jax.config import BertConfig
from biobert_jax.plan.chips import Chip

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclasses.dataclass(frozen=True)
class Shape:
  """What the estimate needs of a training (or forward-only) step."""
  bert: BertConfig
  global_batch: int
  seq_len: int
  predictions: int          # MLM predictions per sequence (0: no MLM head, e.g. fine-tuning)
  head_outputs: int = 0     # fine-tuning: outputs per token of the task head (labels)
  dtype: str = "float32"    # compute dtype (params and optimizer state stay float32)
  remat: bool = False
  training: bool = True
  optimizer_slots: int = 2  # Adam / LAMB: two params-shaped moments


def encoder_params(b: BertConfig) -> int:
  """Non-embedding parameters of the encoder's layers (the N of 6 N D)."""
  h, i = b.hidden_size, b.intermediate_size
  per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # attention, FFN, 2 LayerNorms
  return b.num_hidden_layers * per_layer


def total_params(b: BertConfig, mlm: bool = True) -> int:
  h = b.hidden_size
  emb = (b.vocab_size + b.max_position_embeddings + b.type_vocab_size) * h + 2 * h
  pooler = h * h + h
  head = (h * h + h + 2 * h + b.vocab_size + 2 * h + 2) if mlm else 0  # transform, bias, NSP
  return encoder_params(b) + emb + pooler + head


def flops_per_step(s: Shape) -> dict[str, float]:
  """{"model": the step's FLOPs as MFU counts them, "hardware": with remat's recompute}."""
  b = s.bert
  h, i, layers, v = b.hidden_size, b.intermediate_size, b.num_hidden_layers, b.vocab_size
  tokens = s.global_batch * s.seq_len
  layer_fwd = tokens * layers * (2 * (4 * h * h + 2 * h * i) + 4 * s.seq_len * h)
  head_fwd = s.global_batch * s.predictions * 2 * (h * h + h * v)
  head_fwd += tokens * 2 * h * s.head_outputs + s.global_batch * 2 * h * h  # task head, pooler
  passes = 3 if s.training else 1
  model = passes * (layer_fwd + head_fwd)
  hardware = model + (layer_fwd if (s.training and s.remat) else 0)
  return {"model": float(model), "hardware": float(hardware)}


def activation_bytes_per_layer(s: Shape, batch_per_device: float, tensor: int) -> float:
  b = s.bert
  e = _DTYPE_BYTES[s.dtype]
  sbh = s.seq_len * batch_per_device * b.hidden_size
  as2b = b.num_attention_heads * s.seq_len ** 2 * batch_per_device
  shared = sbh * (2 * e + 1)                  # the layer norms' inputs, a dropout mask
  split = sbh * (14 * e + 1) + as2b * (2 * e + 1)
  return shared + split / tensor


def memory_per_device(s: Shape, *, data: int, fsdp: int, tensor: int) -> dict[str, float]:
  """Bytes per device: params, gradients, optimizer state (all float32, sharded over
  fsdp x tensor; a slight underestimate for the small replicated leaves), activations
  saved for the backward pass, the MLM head's float32 logits, and under fsdp the word
  embeddings gathered whole (see the module docstring)."""
  b = s.bert
  shard = fsdp * tensor
  p = total_params(b, mlm=s.predictions > 0) * 4 / shard
  batch = s.global_batch / (data * fsdp)
  out = {"params": p, "gradients": p if s.training else 0.0,
         "optimizer": s.optimizer_slots * p if s.training else 0.0}
  per_layer = activation_bytes_per_layer(s, batch, tensor)
  e = _DTYPE_BYTES[s.dtype]
  if not s.training:  # forward only: one layer's working set is live at a time
    acts = per_layer
  elif s.remat:
    acts = b.num_hidden_layers * s.seq_len * batch * b.hidden_size * e + per_layer
  else:
    acts = b.num_hidden_layers * per_layer
  out["activations"] = acts
  out["head"] = batch * s.predictions * b.vocab_size * 4 * 2 / tensor  # logits + their grad
  copies = 2 if s.training else 1
  out["gathered_embeddings"] = (copies * b.vocab_size * b.hidden_size * 4 / tensor
                                if fsdp > 1 else 0.0)
  out["total"] = sum(out.values())
  return out


def roofline(s: Shape, chip: Chip, devices: int, memory: dict[str, float],
             collective_bytes: float) -> dict[str, float]:
  """Step time = max(compute, HBM traffic, collectives), per device, each at the chip's peak.

  Compute: the hardware FLOPs / devices at bf16 peak (float32 matmuls on TPU run at the
  same MXU rate with bf16 passes; treat f32 figures as optimistic). HBM: the state read
  and written (params, gradients, optimizer: ~3 passes) plus activations written and read
  once. Collectives: the compiled program's bytes per device over a bidirectional ring.
  An upper bound on speed: real steps overlap these imperfectly."""
  per_dev_flops = chip.bf16_flops / chip.devices_per_chip
  per_dev_hbm = chip.hbm_bandwidth / chip.devices_per_chip
  per_dev_ring = chip.ring_bandwidth / chip.devices_per_chip
  flops = flops_per_step(s)
  t_compute = flops["hardware"] / devices / per_dev_flops
  state = memory["params"] + memory["gradients"] + memory["optimizer"]
  t_hbm = (3 * state + 2 * memory["activations"]) / per_dev_hbm
  t_ici = collective_bytes / per_dev_ring
  step = max(t_compute, t_hbm, t_ici)
  tokens = s.global_batch * s.seq_len
  return {"compute_seconds": t_compute, "hbm_seconds": t_hbm, "collective_seconds": t_ici,
          "step_seconds": step, "tokens_per_second": tokens / step,
          "mfu": flops["model"] / (step * devices * per_dev_flops),
          "bound": max((("compute", t_compute), ("hbm", t_hbm), ("collectives", t_ici)),
                       key=lambda kv: kv[1])[0]}


def collective_bytes(shape: Shape, data: int, fsdp: int, tensor: int) -> float:
  """Bytes one device moves per step in collectives, for a mesh (ring algorithms, n
  devices on an axis, P the float32 parameter bytes): fsdp gathers the weights forward and
  backward and reduce-scatters the gradients, 3 P (n-1)/n / tensor; data all-reduces the
  gradients, 2 P (n-1)/n / (fsdp tensor); tensor all-reduces each layer's attention and MLP
  outputs forward and backward, 4 x 2 s b h e (t-1)/t per layer."""
  p = total_params(shape.bert, shape.predictions > 0) * 4.0
  out = 0.0
  if fsdp > 1:
    out += 3 * p * (fsdp - 1) / fsdp / tensor
  if data > 1:
    out += 2 * p * (data - 1) / data / (fsdp * tensor)
  if tensor > 1:
    e = 2 if shape.dtype != "float32" else 4
    batch = shape.global_batch / (data * fsdp)
    per_layer = 4 * 2 * shape.seq_len * batch * shape.bert.hidden_size * e
    out += shape.bert.num_hidden_layers * per_layer * (tensor - 1) / tensor
  return out


def as_dict(s: Shape) -> dict[str, Any]:
  return {"global_batch": s.global_batch, "seq_len": s.seq_len, "predictions": s.predictions,
          "dtype": s.dtype, "remat": s.remat, "layers": s.bert.num_hidden_layers,
          "hidden": s.bert.hidden_size, "params": total_params(s.bert, s.predictions > 0)}


__all__ = ["Shape", "flops_per_step", "memory_per_device", "roofline", "total_params",
           "encoder_params", "collective_bytes"]
