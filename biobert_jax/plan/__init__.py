"""Planning what a program needs on a device mesh: the trainer's own step compiled for a
TPU topology (deviceless, through libtpu), an H100 node or host devices, and read.

  chips      the accelerator table (peak FLOP/s, HBM, bandwidths, with sources)
  env        topology names; the environment that keeps libtpu deviceless
  topology   topology names -> devices; the compiler's HBM limit
  analytic   BERT's FLOPs and memory from its shapes; the roofline
  hlo        a compiled program's memory, FLOPs, collectives and largest arrays
  planner    plan(config, topology) -> dict; table(); fits_line()
  search     mesh / remat / micro-batch search, analytic first, compiled to confirm

Apply `env.apply_deviceless_env(name)` before JAX loads (experiments/plan.py does).
"""
