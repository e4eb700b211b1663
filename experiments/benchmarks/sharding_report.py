r"""Per-device memory, activation shapes and collectives of the compiled pre-training step.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python -m experiments.benchmarks.sharding_report --preset=mini
  python -m experiments.benchmarks.sharding_report --preset=base --dtype=bfloat16 \
      --topology=v5e:4x4 --meshes=1x16x1 --batch_size=256        # deviceless TPU compile

Compiles (never runs) the step that trainers/pretrain.py jits, for each mesh
(data,fsdp,tensor), and prints one JSON line per mesh from biobert_jax.plan.hlo: memory
per device, XLA's FLOPs per device, collectives by kind and the largest arrays.
The figures in docs/sharding.md come from here.
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags

_PRESET = flags.DEFINE_string("preset", "mini", "experiments/configs/pretrain.py preset.")
_MESHES = flags.DEFINE_list("meshes", ["8x1x1", "1x8x1", "2x2x2", "1x1x8"],
                            "dataxfsdpxtensor meshes.")
_TOPOLOGY = flags.DEFINE_string("topology", "", "A TPU topology (e.g. v5e:4x4) to compile "
                                "for deviceless; empty: this host's devices.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Global batch (0: the preset's).")
_LENGTH = flags.DEFINE_integer("max_seq_length", 0, "Length (0: the preset's).")
_DTYPE = flags.DEFINE_string("dtype", "", "Compute dtype (empty: the preset's).")
_REMAT = flags.DEFINE_bool("remat", False, "Recompute layer activations.")
_SCAN = flags.DEFINE_bool("scan_layers", False, "Scan the layer stack.")


def main(_):
  if _TOPOLOGY.value:  # before jax loads: libtpu must never look for a metadata server.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-16")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  import jax
  import jax.numpy as jnp
  from biobert_jax import models, sharding
  from biobert_jax.config import BertConfig
  from biobert_jax.plan import hlo
  from biobert_jax.train import optim
  from biobert_jax.train import state as state_lib
  from biobert_jax.train import step as step_lib
  from experiments.configs import pretrain as configs

  if _TOPOLOGY.value:
    from jax.experimental import topologies
    devices = topologies.get_topology_desc(topology_name=_TOPOLOGY.value,
                                           platform="tpu").devices
  else:
    devices = jax.devices()
  config = configs.get_config(_PRESET.value)
  batch_size = _BATCH.value or config.batch_size
  length = _LENGTH.value or config.max_seq_length
  dtype = _DTYPE.value or config.dtype
  bert = BertConfig.preset(_PRESET.value, vocab_size=28996,
                           max_position_embeddings=max(512, length))
  model = models.BertForPreTraining(bert, dtype=models.compute_dtype(dtype),
                                    scan_layers=_SCAN.value, remat=_REMAT.value or config.remat)
  tx, schedule = optim.optimizer_from_config(config, config.total_steps)
  specs = models.logical_axes(model, seq_len=16)
  i32, p = jnp.int32, config.max_predictions_per_seq
  shapes = {"input_ids": (batch_size, length), "input_mask": (batch_size, length),
            "segment_ids": (batch_size, length), "masked_lm_positions": (batch_size, p),
            "masked_lm_ids": (batch_size, p), "masked_lm_weights": (batch_size, p),
            "next_sentence_labels": (batch_size,)}
  batch = {k: jax.ShapeDtypeStruct(s, jnp.float32 if k == "masked_lm_weights" else i32)
           for k, s in shapes.items()}
  for spec in _MESHES.value:
    data, fsdp, tensor = (int(x) for x in spec.split("x"))
    mesh = sharding.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor}, devices)
    abstract_state, shardings = state_lib.state_shardings(models.param_shapes(model), specs,
                                                          tx, mesh)
    step = step_lib.jit_train_step(step_lib.make_train_step(model, tx, schedule, mesh=mesh),
                                   shardings, mesh)
    start = time.perf_counter()
    compiled = step.lower(abstract_state, batch).compile()
    row = {"preset": _PRESET.value, "dtype": dtype, "batch": batch_size, "length": length,
           "remat": model.remat, "scan_layers": model.scan_layers,
           "devices": f"{devices[0].device_kind} x{len(devices)}",
           "mesh": {"data": data, "fsdp": fsdp, "tensor": tensor},
           "compile_s": round(time.perf_counter() - start, 1),
           **hlo.summary(compiled, seq_len=length)}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
