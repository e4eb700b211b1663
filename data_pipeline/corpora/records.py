"""What every corpus reader yields and counts: documents, read statistics, error policy
(raise `CorpusError`, or skip and count).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Literal

from data_pipeline.errors import InputError

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES = ("raise", "skip")

log = logging.getLogger("data_pipeline.corpora")


@dataclasses.dataclass(frozen=True)
class Document:
  """One pre-training document.

  Attributes:
    doc_id: stable identifier: the PMID for PubMed, the PMCID (else PMID) for PMC, and
      `<file name>:<first line number>` for plain text.
    sentences: the document's sentences in order (already split).
  """
  doc_id: str
  sentences: tuple[str, ...]


@dataclasses.dataclass
class ReadStats:
  """Counters of one reader run (add several runs with `merge`)."""
  files: int = 0
  documents: int = 0
  sentences: int = 0
  skipped_no_text: int = 0  # well-formed records without abstract/body (not an error)
  skipped_deleted: int = 0  # MEDLINE <DeleteCitation> entries
  skipped_errors: int = 0  # malformed records/files skipped under on_error="skip"
  skipped_other: int = 0  # top-level elements that hold no citation (unknown tags)
  errors: list[str] = dataclasses.field(default_factory=list)  # first messages only

  MAX_KEPT_ERRORS = 100

  def record_error(self, message: str) -> None:
    self.skipped_errors += 1
    if len(self.errors) < self.MAX_KEPT_ERRORS:
      self.errors.append(message)
    log.warning("skipped malformed input: %s", message)

  def merge(self, other: ReadStats) -> None:
    for field in dataclasses.fields(self):
      if field.name == "errors":
        room = self.MAX_KEPT_ERRORS - len(self.errors)
        self.errors.extend(other.errors[:max(room, 0)])
      else:
        setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class CorpusError(InputError):
  """Malformed corpus input; the message names the file and the line or record."""


def check_on_error(on_error: str) -> None:
  if on_error not in ON_ERROR_CHOICES:
    raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


def handle_error(message: str, on_error: str, stats: ReadStats) -> None:
  """Raises `CorpusError(message)` or counts a skip, according to the policy."""
  if on_error == "raise":
    raise CorpusError(message)
  stats.record_error(message)
