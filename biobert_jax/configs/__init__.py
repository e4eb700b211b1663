"""Configs owned by the library: the presets (`pretrain`, `finetune`), the shared optimiser
block (`optim`), the rule helpers (`checks`) and dotted-key overrides (`overrides`)."""
