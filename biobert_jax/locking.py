"""One writer per output directory: an advisory lock held for the whole run.

`hold(directory)` takes an exclusive `fcntl.flock` on `<directory>/.biobert.lock` and
writes the holder (pid, host, start time, command) into it; a clean exit removes the
file. A second run on the same directory gets `LockHeld` at once, whose one-line message
names the holder. The kernel drops a flock when its process dies (even on SIGKILL), so a
lock file left by a dead run is simply taken over, and its record (still naming that run)
is logged as "taking over a stale lock". Where flock is not supported (some FUSE mounts), the record
alone decides: a holder on this host whose pid is gone is stale; one on another host is
trusted (remove the file by hand when that host is known to be down).

Multi-host runs call `hold(..., primary=jax.process_index() == 0)`: only the primary
locks; the others run under its lock. On an object store (gs://) the lock is an object
created only if absent (generation-match precondition, decided by the store); a holder on
this host whose pid is gone is stale, one on another host is trusted (docs/robustness.md).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator

from biobert_jax import fs

LOCK_NAME = ".biobert.lock"

_held: set[str] = set()  # directories this process holds (flock is per open file)
_held_guard = threading.Lock()


class LockHeld(RuntimeError):
  """Another live run holds the directory's lock."""


def _record() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.UTC).isoformat(
              timespec="seconds"),
          "command": " ".join(sys.argv)[:500]}


def _read(fd: int) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 1 << 16)
    value = json.loads(data.decode("utf-8")) if data.strip() else {}
    return value if isinstance(value, dict) else {}
  except (OSError, ValueError):
    return {}


def describe(holder: dict) -> str:
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since "
          f"{holder.get('started', '?')}")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _alive(holder: dict) -> bool:
  """Without flock: whether the recorded holder may still run."""
  if not holder.get("pid"):
    return False
  if holder.get("host") != socket.gethostname():
    return True
  return _pid_alive(int(holder["pid"]))


def _write(fd: int, value: dict) -> None:
  data = (json.dumps(value, sort_keys=True) + "\n").encode("utf-8")
  os.ftruncate(fd, 0)
  os.pwrite(fd, data, 0)
  os.fsync(fd)


@contextlib.contextmanager
def hold(directory: str | os.PathLike, *, primary: bool = True,
         log=print) -> Iterator[str | None]:
  """Holds `directory`'s lock (creating the directory) for the `with` block.

  Yields the lock file's path (None on non-primary processes).

  Raises:
    LockHeld: `<dir> is in use by pid P on host H since T (...)`, before anything is
      written.
  """
  if not primary:
    yield None
    return
  if fs.is_remote(directory):
    with _hold_object(os.fspath(directory).rstrip("/"), log) as path:
      yield path
    return
  directory = os.path.abspath(os.fspath(directory))
  created = not os.path.isdir(directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LOCK_NAME)
  if os.path.islink(path):
    raise LockHeld(f"{path} is a symbolic link; refusing to use it as a lock")
  with _held_guard:
    if directory in _held:
      raise LockHeld(f"{directory} is in use by this process (pid {os.getpid()}); one run "
                     "per directory")
    _held.add(directory)
  fd = -1
  try:
    fd, flocked = _open_locked(path, directory)
    previous = _read(fd)
    if previous.get("pid"):
      log(f"{directory}: taking over a stale lock of {describe(previous)} (that run ended "
          "without releasing it)")
    _write(fd, _record())
    try:
      yield path
    finally:
      # Removed while still locked: a run that opened this file meanwhile sees that its
      # inode is gone and opens the new one (see _open_locked).
      os.remove(path)
      if created and not os.listdir(directory):
        os.rmdir(directory)  # a run that stopped before writing anything leaves no trace
      if flocked:
        fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    if fd >= 0:
      os.close(fd)
    with _held_guard:
      _held.discard(directory)


def _open_locked(path: str, directory: str) -> tuple[int, bool]:
  """(fd of the locked lock file, whether flock is in use); LockHeld when it is taken."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder_record = _read(fd)
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise LockHeld(f"{directory} is in use by {describe(holder_record)} (lock {path}); "
                       "wait for that run to end or use another directory") from None
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise
      # No flock on this file system: the record alone decides.
      if _alive(holder_record):
        raise LockHeld(f"{directory} is in use by {describe(holder_record)} (lock {path}, "
                       "no flock on this file system; remove the file if that run is "
                       "gone)") from None
      return os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)), False
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return fd, True
    os.close(fd)  # the previous holder removed the file after we opened it: again


@contextlib.contextmanager
def _hold_object(directory: str, log) -> Iterator[str]:
  """The object-store lock: `<directory>/.biobert.lock` created only if absent."""
  path = fs.join(directory, LOCK_NAME)
  with _held_guard:
    if directory in _held:
      raise LockHeld(f"{directory} is in use by this process (pid {os.getpid()}); one run "
                     "per directory")
    _held.add(directory)
  try:
    record = (json.dumps(_record(), sort_keys=True) + "\n").encode("utf-8")
    for _ in range(2):
      if fs.create_new(path, record):
        break
      previous = holder(directory)
      if _alive(previous):
        raise LockHeld(f"{directory} is in use by {describe(previous)} (lock {path}); wait "
                       "for that run to end, or delete the lock object if it is gone")
      log(f"{directory}: taking over a stale lock of {describe(previous)} (that run ended "
          "without releasing it)")
      fs.remove(path)
    else:
      raise LockHeld(f"{directory}: another run took the lock {path} while a stale one was "
                     "replaced")
    try:
      yield path
    finally:
      fs.remove(path)
  finally:
    with _held_guard:
      _held.discard(directory)


def holder(directory: str | os.PathLike) -> dict:
  """The record in `directory`'s lock file ({} when there is none)."""
  if fs.is_remote(directory):
    try:
      value = json.loads(fs.read_text(fs.join(os.fspath(directory), LOCK_NAME)))
    except (OSError, ValueError):
      return {}
    return value if isinstance(value, dict) else {}
  path = os.path.join(os.fspath(directory), LOCK_NAME)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return {}
  try:
    return _read(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def hold_for_job(directory: str | os.PathLike, log=print) -> Iterator[str | None]:
  """`hold` on the primary process of a (jax.distributed) job; with several processes,
  all raise LockHeld together when the primary could not lock (none goes on alone)."""
  import jax  # only multi-process jobs need it
  import numpy as np
  from jax.experimental import multihost_utils
  with contextlib.ExitStack() as stack:
    held: LockHeld | None = None
    path = None
    try:
      path = stack.enter_context(hold(directory, primary=jax.process_index() == 0, log=log))
    except LockHeld as e:
      held = e
    if jax.process_count() > 1:
      refused = bool(multihost_utils.broadcast_one_to_all(np.asarray(held is not None)))
      if refused and held is None:
        held = LockHeld(f"{fs.abspath(directory)}: the primary process "
                        f"could not lock it (held by {describe(holder(directory))})")
    if held is not None:
      raise held
    yield path
