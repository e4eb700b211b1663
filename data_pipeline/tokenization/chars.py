"""Character classes of BERT's BasicTokenizer from `unicodedata`, shared by the Python and
in-graph faces so they agree character for character.
"""
import functools
import sys
import unicodedata

# BERT's `_is_chinese_char`: the CJK Unified Ideographs blocks (not Hangul/kana).
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)

# BERT treats these as whitespace even though they are control characters.
_TAB_NEWLINE = frozenset("\t\n\r")


def is_removed(char: str) -> bool:
  """BERT `_clean_text` drops NUL, U+FFFD and control chars (category C*, except \\t\\n\\r)."""
  cp = ord(char)
  if cp == 0 or cp == 0xFFFD:
    return True
  if char in _TAB_NEWLINE:
    return False
  return unicodedata.category(char).startswith("C")


def is_whitespace(char: str) -> bool:
  """Whitespace as seen by BERT after cleaning: its `_is_whitespace` plus what str.split() splits.

  `_clean_text` maps space/\\t/\\n/\\r/Zs to " " and `whitespace_tokenize` then splits with
  str.split(), which also splits on the line/paragraph separators U+2028/U+2029 (Zl/Zp)
  that survive cleaning.
  """
  if char in _TAB_NEWLINE or char == " ":
    return True
  return unicodedata.category(char) in ("Zs", "Zl", "Zp")


def is_punctuation(char: str) -> bool:
  """BERT `_is_punctuation`: all ASCII non-alphanumeric printables, and Unicode P*."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def is_cjk(char: str) -> bool:
  cp = ord(char)
  return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_nonspacing_mark(char: str) -> bool:
  return unicodedata.category(char) == "Mn"


def _ranges(predicate) -> list[tuple[int, int]]:
  """Maximal runs [lo, hi] of code points (surrogates excluded) satisfying `predicate`."""
  out: list[tuple[int, int]] = []
  start = None
  for cp in range(sys.maxunicode + 2):
    ok = cp <= sys.maxunicode and not 0xD800 <= cp <= 0xDFFF and predicate(chr(cp))
    if ok and start is None:
      start = cp
    elif not ok and start is not None:
      out.append((start, cp - 1))
      start = None
  return out


def _re2_class(ranges: list[tuple[int, int]]) -> str:
  parts = []
  for lo, hi in ranges:
    parts.append(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}")
  return "[" + "".join(parts) + "]"


@functools.cache
def re2_classes() -> dict[str, str]:
  """RE2 character classes (`removed`, `whitespace`, `punctuation`, `cjk`, `mn`).

  Scanning all code points takes ~1 s, so it runs once per process, on first use.
  """
  return {
      "removed": _re2_class(_ranges(is_removed)),
      "whitespace": _re2_class(_ranges(is_whitespace)),
      "punctuation": _re2_class(_ranges(is_punctuation)),
      "cjk": _re2_class(list(CJK_RANGES)),
      "mn": _re2_class(_ranges(is_nonspacing_mark)),
  }


@functools.cache
def python_non_whitespace_run() -> str:
  """A Python `re` pattern for a maximal run of non-whitespace (BERT's whitespace)."""
  ranges = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"
                   for lo, hi in _ranges(is_whitespace))
  return f"[^{ranges}]+"


# What the basic tokenizer does with a character (see `char_kind`).
OTHER, REMOVED, CJK, PUNCTUATION = 0, 1, 2, 3


@functools.lru_cache(maxsize=1 << 16)
def char_kind(char: str) -> int:
  """One of OTHER, REMOVED, CJK, PUNCTUATION (memoised: the hot path of cache misses)."""
  if is_removed(char):
    return REMOVED
  if is_cjk(char):
    return CJK
  if is_punctuation(char):
    return PUNCTUATION
  return OTHER
