"""One file-system layer: local paths through `os`/`open`/`glob` exactly as before, `gs://`
(any fsspec URL) through fsspec/gcsfs, which honours `STORAGE_EMULATOR_HOST` and retries
408/429/5xx. Object stores have no rename or append: `commit`/`finished`/`append_text` keep
the local promises (docs/storage.md). Importing it points etils.epath (orbax's metadata) and
TensorStore (orbax's arrays) at the same store.
"""
from __future__ import annotations

import builtins
import contextlib
import glob as _glob
import os
import pathlib
import posixpath
import shutil
from typing import IO, Any
from collections.abc import Iterator

from etils import epath

TMP_SUFFIX = ".tmp"


def configure() -> None:
  """Sets the environment the storage clients read (idempotent; never overrides a value
  the user set). Called at import; call again after changing `STORAGE_EMULATOR_HOST`."""
  os.environ.setdefault("EPATH_USE_TF", "false")
  emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
  if emulator and emulator != "default":
    url = emulator if "://" in emulator else "http://" + emulator
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", url)
    # The zonal-bucket probe goes to Google's control API, which an emulator lacks.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    if not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
      # An emulator takes no credentials: every gcsfs instance (orbax's through epath
      # too) skips the credential search, which would ask a metadata server.
      import fsspec.config
      fsspec.config.conf.setdefault("gs", {}).setdefault("token", "anon")


configure()


class StorageError(OSError):
  """One line naming the operation and the URL."""


def is_remote(p: Any) -> bool:
  s = os.fspath(p)
  return "://" in s and not s.startswith("file://")


def _fs(p: str):
  import fsspec
  emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
  kwargs = {}
  if p.startswith(("gs://", "gcs://")) and emulator and emulator != "default" and not (
      os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")):
    kwargs["token"] = "anon"  # an emulator takes no credentials; never ask a metadata server
  return fsspec.core.url_to_fs(p, **kwargs)[0]


def _scheme(p: str) -> str:
  return p.split("://", 1)[0] + "://"


@contextlib.contextmanager
def _errors(op: str, p: str) -> Iterator[None]:
  """Storage failures as one line: `<op> <url>: <reason>`."""
  if not is_remote(p):
    yield
    return
  try:
    yield
  except StorageError:
    raise
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{op} {p}: not found ({_first_line(e)})") from None
  except PermissionError as e:
    raise PermissionError(f"{op} {p}: permission denied ({_first_line(e)})") from None
  except Exception as e:  # gcsfs HttpError, aiohttp errors, OSError("Forbidden: ...")
    reason = _first_line(e)
    if reason.startswith("Forbidden"):
      raise PermissionError(f"{op} {p}: permission denied ({reason})") from None
    raise StorageError(f"{op} {p}: {type(e).__name__}: {reason}") from None


def _first_line(e: BaseException) -> str:
  text = str(e).strip() or type(e).__name__
  return text.splitlines()[0]


def path(p: Any) -> pathlib.Path | epath.Path:
  """pathlib's face for a path: a `pathlib.Path` when local (exactly as before), an
  `etils.epath.Path` for a URL (`/`, `.name`, `.exists()`, `.open()`, `.read_text()`)."""
  p = os.fspath(p)
  return epath.Path(p) if is_remote(p) else pathlib.Path(p)


def join(base: Any, *parts: str) -> str:
  base = os.fspath(base)
  return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def abspath(p: Any) -> str:
  """`os.path.abspath` for local paths; URLs unchanged (never `<cwd>/gs:/...`)."""
  p = os.fspath(p)
  return p if is_remote(p) else os.path.abspath(p)


def basename(p: Any) -> str:
  p = os.fspath(p)
  return posixpath.basename(p.rstrip("/")) if is_remote(p) else os.path.basename(p)


def dirname(p: Any) -> str:
  p = os.fspath(p)
  return posixpath.dirname(p.rstrip("/")) if is_remote(p) else os.path.dirname(p)


def exists(p: Any) -> bool:
  p = os.fspath(p)
  if not is_remote(p):
    return os.path.exists(p)
  with _errors("stat", p):
    return _fs(p).exists(p)


def isdir(p: Any) -> bool:
  p = os.fspath(p)
  if not is_remote(p):
    return os.path.isdir(p)
  with _errors("stat", p):
    return _fs(p).isdir(p)


def isfile(p: Any) -> bool:
  p = os.fspath(p)
  if not is_remote(p):
    return os.path.isfile(p)
  with _errors("stat", p):
    return _fs(p).isfile(p)


def getsize(p: Any) -> int:
  p = os.fspath(p)
  if not is_remote(p):
    return os.path.getsize(p)
  with _errors("stat", p):
    return int(_fs(p).size(p))


def listdir(p: Any) -> list[str]:
  """Names (not paths) of the entries of directory `p`."""
  p = os.fspath(p)
  if not is_remote(p):
    return os.listdir(p)
  with _errors("list", p):
    fs = _fs(p)
    if not fs.isdir(p):
      raise FileNotFoundError(p)
    return sorted({posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False, refresh=True)})


def glob(pattern: str) -> list[str]:
  """Sorted matches of a shell pattern (local: `glob.glob`; URLs keep their scheme)."""
  if not is_remote(pattern):
    return sorted(_glob.glob(pattern))
  with _errors("list", pattern):
    fs = _fs(pattern)
    fs.invalidate_cache()
    return sorted(_scheme(pattern) + m for m in fs.glob(pattern))


def makedirs(p: Any) -> None:
  """Creates a local directory (and parents); nothing on an object store (no directories)."""
  p = os.fspath(p)
  if not is_remote(p):
    os.makedirs(p, exist_ok=True)


def remove(p: Any) -> None:
  """Removes a file or a whole directory tree; missing is fine."""
  p = os.fspath(p)
  if not is_remote(p):
    if os.path.isdir(p) and not os.path.islink(p):
      shutil.rmtree(p)
    elif os.path.lexists(p):
      os.remove(p)
    return
  with _errors("delete", p):
    fs = _fs(p)
    fs.invalidate_cache()
    if fs.exists(p):
      fs.rm(p, recursive=True)
    fs.invalidate_cache()


def open(p: Any, mode: str = "r", encoding: str | None = None, **kwargs: Any) -> IO:
  """`open` for local paths; an fsspec file for URLs (a written object appears on close)."""
  p = os.fspath(p)
  if "b" not in mode and encoding is None:
    encoding = "utf-8"
  if not is_remote(p):
    return builtins.open(p, mode, encoding=encoding, **kwargs)
  op = "read" if "r" in mode else "write"
  if "a" in mode:
    raise StorageError(f"append {p}: object stores have no append (use fs.append_text)")
  with _errors(op, p):
    fs = _fs(p)
    if "r" in mode:
      fs.invalidate_cache(p)
      fs.info(p)  # a missing object fails here, with its name, not at the first read
    return fs.open(p, mode, encoding=encoding, **kwargs)


def create_new(p: Any, data: bytes) -> bool:
  """Writes `p` only if it does not exist; False if it does. On an object store this is
  one upload with the precondition ifGenerationMatch=0, which the store decides atomically."""
  p = os.fspath(p)
  if not is_remote(p):
    try:
      fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                   0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    return True
  with _errors("create", p):
    fs = _fs(p)
    try:
      fs.pipe_file(p, data, mode="create")
    except FileExistsError:
      return False
    fs.invalidate_cache()
    return True


def version(p: Any) -> int:
  """What changes whenever `p`'s content is replaced: the modification time in ns locally,
  the object's generation on a store."""
  p = os.fspath(p)
  if not is_remote(p):
    return os.stat(p).st_mtime_ns
  with _errors("stat", p):
    fs = _fs(p)
    fs.invalidate_cache(p)
    return int(fs.info(p)["generation"])


def read_bytes(p: Any) -> bytes:
  with open(p, "rb") as f:
    return f.read()


def read_text(p: Any) -> str:
  with open(p, "r", encoding="utf-8") as f:
    return f.read()


def write_bytes(p: Any, data: bytes) -> None:
  with open(p, "wb") as f:
    f.write(data)


def write_text(p: Any, text: str) -> None:
  with open(p, "w", encoding="utf-8") as f:
    f.write(text)


def append_text(p: Any, text: str) -> None:
  """Appends locally; on an object store rewrites the object (old content + `text`)."""
  p = os.fspath(p)
  if not is_remote(p):
    with builtins.open(p, "a", encoding="utf-8") as f:
      f.write(text)
    return
  old = read_text(p) if exists(p) else ""
  write_text(p, old + text)


def copy(src: Any, dst: Any) -> None:
  """Copies one file between any two places (local or remote)."""
  src, dst = os.fspath(src), os.fspath(dst)
  if not is_remote(src) and not is_remote(dst):
    shutil.copyfile(src, dst)
    return
  if is_remote(src) and is_remote(dst) and _scheme(src) == _scheme(dst):
    with _errors("copy", src):
      _fs(src).copy(src, dst)
    return
  with open(src, "rb") as fin, open(dst, "wb") as fout:
    shutil.copyfileobj(fin, fout)


def copytree(src: Any, dst: Any) -> None:
  """Copies every file under `src` to the same relative path under `dst`."""
  src, dst = os.fspath(src), os.fspath(dst)
  for rel in walk_files(src):
    target = join(dst, *rel.split("/"))
    if not is_remote(target):
      os.makedirs(os.path.dirname(target), exist_ok=True)
    copy(join(src, *rel.split("/")), target)


def walk_files(root: Any) -> list[str]:
  """Relative `/`-joined paths of every file under `root`, sorted."""
  root = os.fspath(root)
  if not is_remote(root):
    out = []
    for d, _, files in os.walk(root):
      for f in files:
        out.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
    return sorted(out)
  with _errors("list", root):
    fs = _fs(root)
    fs.invalidate_cache()
    bare = root.split("://", 1)[1].rstrip("/")
    return sorted(f[len(bare) + 1:] for f in fs.find(root))


def commit(tmp: Any, final: Any) -> None:
  """Moves a finished `tmp` (file or directory) to `final`, replacing an older `final`.

  Locally: renames (a directory in two renames; a kill between them leaves the old one at
  `<final>.old`). On an object store: deletes the old `final`, copies `tmp` into place and
  deletes `tmp` last, so `final` without `tmp` beside it is always complete (`finished`).
  """
  tmp, final = os.fspath(tmp), os.fspath(final)
  if not is_remote(final):
    if os.path.isdir(tmp) and os.path.isdir(final):
      old = final + ".old"
      remove(old)
      os.rename(final, old)
      os.rename(tmp, final)
      shutil.rmtree(old)
    else:
      os.replace(tmp, final)
    return
  if not isdir(tmp):
    copy(tmp, final)  # one object: a server-side copy appears whole or not at all
    remove(tmp)
    return
  marker = final.rstrip("/") + TMP_SUFFIX
  if tmp.rstrip("/") != marker:  # staged elsewhere: an empty object marks the copy as ongoing
    write_bytes(marker, b"")
  remove(final)
  copytree(tmp, final)
  remove(tmp)
  remove(marker)


def finished(final: Any) -> bool:
  """`final` exists and is not mid-`commit` (no `<final>.tmp` beside it on a store)."""
  final = os.fspath(final)
  if not exists(final):
    return False
  return not is_remote(final) or not exists(final.rstrip("/") + TMP_SUFFIX)


def discard_unfinished(final: Any) -> None:
  """Before staging `<final>.tmp` again: a `final` left by a killed `commit` goes first,
  so `final` never stands alone half-copied."""
  final = os.fspath(final)
  tmp = final + TMP_SUFFIX
  if is_remote(final) and exists(tmp):
    remove(final)
  remove(tmp)


@contextlib.contextmanager
def local_copy(p: Any) -> Iterator[str]:
  """A local path holding `p`'s content (for readers that need a real file): `p` itself
  when local, else a temporary download removed on exit."""
  import tempfile
  p = os.fspath(p)
  if not is_remote(p):
    yield p
    return
  with tempfile.TemporaryDirectory() as d:
    target = os.path.join(d, basename(p))
    if isdir(p):
      copytree(p, target)
    else:
      copy(p, target)
    yield target
