"""Loaded by every Python child of the gs:// tests (this folder is put on PYTHONPATH):
any connection to an address outside 127.0.0.1 fails loudly, and is
logged to $LOOPBACK_GUARD_LOG (checked by the fixture)."""
import os
import socket

_LOOPBACK = ("127.", "::1", "localhost")
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _check(addr):
  if isinstance(addr, tuple) and not str(addr[0]).startswith(_LOOPBACK):
    log = os.environ.get("LOOPBACK_GUARD_LOG")
    if log:  # the fixture fails the test even where a caller swallowed the error
      with open(log, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {addr!r}\n")
    raise ConnectionRefusedError(f"loopback guard: refused connect to {addr!r} "
                                 "(tests may only talk to 127.0.0.1)")


def _guarded_connect(self, addr):
  _check(addr)
  return _connect(self, addr)


def _guarded_connect_ex(self, addr):
  _check(addr)
  return _connect_ex(self, addr)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
