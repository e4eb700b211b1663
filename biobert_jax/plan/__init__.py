"""Plan a training run on accelerators that are not here: compile the trainer's own step
for a TPU topology (deviceless, through libtpu) or host devices, and read what it needs.

  chips      the accelerator table (peak FLOP/s, HBM, bandwidths, with sources)
  topology   topology names -> devices; the environment that keeps libtpu deviceless
  analytic   BERT's FLOPs and memory from its shapes; the roofline
  compiled   memory and collectives of a compiled executable
  planner    plan(config, topology) -> dict; table(); fits_line()
  search     mesh / remat / micro-batch search, analytic first, compiled to confirm

Import `topology.apply_deviceless_env(name)` before JAX loads (experiments/plan.py does).
"""
