"""Task adapters of the fine-tuning trainer; the interface is biobert_jax/tasks/base.py."""
from __future__ import annotations

import importlib

from biobert_jax.tasks.base import SplitData, Task, TaskData

# The one task registry: name -> adapter module (imported on first use).
_ADAPTERS = {"ner": "biobert_jax.tasks.ner", "re": "biobert_jax.tasks.re",
             "qa": "biobert_jax.tasks.qa", "multi_ner": "biobert_jax.tasks.multi_ner"}
NAMES = tuple(_ADAPTERS)


def get_task(name: str) -> Task:
  """Returns the adapter for a task family ("ner", "re", "qa"); imported lazily."""
  if name not in _ADAPTERS:
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(_ADAPTERS)}")
  return importlib.import_module(_ADAPTERS[name]).TASK


__all__ = ["SplitData", "Task", "TaskData", "get_task", "NAMES"]
