"""Rule-based sentence splitting tuned for biomedical abstracts (the rules: `sentence_spans`;
accuracy: docs/results.md)."""
from __future__ import annotations

import re

# Never the last token of a sentence (lower-cased, without the final period).
_ALWAYS_ABBREV = frozenset("""
e.g i.e et al vs v approx appr ca cf dr drs mr mrs ms prof st sr jr resp viz
incl esp e.g.,
""".split())

# Not a boundary when the next token is a number or a figure/table label ("Fig. 2A",
# "Fig. S1", "No. 5", "Eq. (3)", "Jan. 2010").
_NUMBERED_ABBREV = frozenset("""
fig figs tab tabs eq eqs ref refs no nos vol vols pp p chap sec sect suppl ed eds
jan feb mar apr jun jul aug sep sept oct nov dec art approx
""".split())

# Taxonomy abbreviations: a sentence may end with them ("... Anthoxanthum spp. The"),
# but not when a gene-style or upper-case token follows ("Leishmania spp. kDNA was").
_TAXON_ABBREV = frozenset("sp spp ssp subsp var coll".split())

# Words that start sentences and hardly ever follow an initial or an acronym inside one:
# they decide "S.A. No other author" and "vitamin D. The" for a boundary.
_SENTENCE_STARTERS = frozenset("""
The This These That Those There Thus Therefore However Moreover Furthermore In We Our
It Its No Not A An All Both Each Further Here Although While When Since After Before
Finally Overall Conversely Similarly Additionally Also Among Of On For To Using Based
""".split())

_CANDIDATE = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_NEXT_TOKEN = re.compile(r"\s+(\S+)")
_DOTTED_ACRONYM = re.compile(r"^(?:[A-Za-z]\.){2,}$")
_SENTENCE_START = re.compile(r"^[\"'“‘(\[]*(?:[A-Z0-9]|[a-z]+[A-Z0-9])")
_NUMBER_OR_LABEL = re.compile(r"^[(\[]?(?:\d|[SIVX]+\d*[A-Za-z]?\b|[A-Z]\b|[A-Z]\d)")


def _token_before(text: str, end: int) -> str:
  """The whitespace-delimited token ending at `end`, without leading brackets/quotes."""
  start = end
  while start > 0 and not text[start - 1].isspace():
    start -= 1
  return text[start:end].lstrip("([\"'“‘")


def _is_boundary(text: str, punct_start: int, punct_end: int) -> bool:
  """Decides one candidate: `text[punct_start:punct_end]` is the punctuation run."""
  following = _NEXT_TOKEN.match(text, punct_end)
  if following is None:
    return False  # only trailing whitespace: the caller closes the last sentence anyway
  next_token = following.group(1)
  if not _SENTENCE_START.match(next_token):
    return False
  punct = text[punct_start:punct_end]
  if not punct.startswith("."):
    return True  # "?" and "!" are not used for abbreviations
  word = _token_before(text, punct_start)
  if "." in punct.rstrip(".") or len(punct.rstrip("\"'”’)]")) > 1:
    return True  # "...)" or an ellipsis; a closing bracket after the period ends it
  lowered = word.lower()
  bare_next = next_token.lstrip("\"'“‘([")
  if lowered in _ALWAYS_ABBREV:
    return False
  if _DOTTED_ACRONYM.match(word + "."):
    return bare_next in _SENTENCE_STARTERS
  if lowered in _TAXON_ABBREV:
    return bool(re.match(r"^[A-Z][a-z]", bare_next))
  if lowered in _NUMBERED_ABBREV and _NUMBER_OR_LABEL.match(next_token):
    return False
  if len(word) == 1 and word.isupper():
    # An initial ("J. Smith", "E. Coli" in titles) or a sentence ending in a letter
    # ("vitamin D. The", "hepatitis B. We"). In abstracts the latter is far more common
    # before a capitalised word, except in sequences of initials ("A. B. Smith").
    return not re.match(r"^[A-Z]\.$", next_token)
  return True


def split_sentences(text: str) -> list[str]:
  """Splits `text` into sentences; whitespace inside a sentence is kept as given."""
  return [text[start:end] for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
  """The [start, end) character spans of `split_sentences(text)` in `text` (stripped).

  A boundary is proposed after `.`, `!`, `?` (plus closing quotes/brackets) that is followed
  by whitespace, and is then accepted or rejected by looking at the token that ends with the
  punctuation and the token after it:

  * known abbreviations never end a sentence: "e.g.", "i.e.", "et al.", "vs.", "approx.",
    "Dr.", "cf.", "ca."; dotted acronyms ("U.S.", "S.A.") and taxonomy abbreviations
    ("spp.") end one only before a typical sentence starter ("The", "No", "We", ...) or,
    for "spp.", a capitalised word;
  * reference abbreviations ("Fig.", "Eq.", "No.", "Ref.", "Vol.", months, ...) do not
    end a sentence when a number or figure label follows ("Fig. 2", "No. 5", "Fig. S1");
  * the next sentence must start like one: an upper-case letter, a digit, an opening
    bracket/quote, or a gene-style token that is lower-case first but has capitals or digits
    later ("mRNA", "p53", "siRNA"); so "E. coli", "S. aureus", "approx. 3.5 mg" (lower-case
    or number after an abbreviation) and "p < 0.05" stay inside their sentence;
  * decimal numbers ("3.5", "0.05") never contain whitespace after the point, so they are
    never candidates.
  """
  spans = []
  start = 0
  for match in _CANDIDATE.finditer(text):
    if _is_boundary(text, match.start(), match.end()):
      span = _stripped(text, start, match.end())
      if span:
        spans.append(span)
      start = match.end()
  span = _stripped(text, start, len(text))
  if span:
    spans.append(span)
  return spans


def _stripped(text: str, start: int, end: int) -> tuple[int, int] | None:
  """`text[start:end]` without surrounding whitespace, as a span; None when empty."""
  while start < end and text[start].isspace():
    start += 1
  while end > start and text[end - 1].isspace():
    end -= 1
  return (start, end) if end > start else None
