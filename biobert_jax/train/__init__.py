"""Pre-training and fine-tuning pieces: optimizer, losses, train state, step, loop.

  optim.make_optimizer(cfg) -> (tx, schedule)
  state.create_state / state_from_params / state_shardings   (plain-dict state)
  step.make_train_step(model, tx, schedule, grad_accum_steps=k) / jit_train_step
  step.make_finetune_step(loss_fn, tx, schedule, shardings, mesh)   (the fine-tuning step:
                                 make_loss_grad_step + make_update_step, ahead.SplitTrainStep)
  ahead.CompiledByShape / SplitTrainStep      (every batch shape compiled ahead, in threads)
  loop.run(...)                                               (logging, checkpoints, guards)
"""
