"""Process-wide runtime settings for the mains (placeholder; filled in by measurements)."""
from __future__ import annotations


def configure() -> None:
  """Applies the runtime settings; call at the start of a main, before jax runs anything."""
