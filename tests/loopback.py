"""A local HTTP server for tests of downloads (the named-weights caches): no network."""

import http.server
import os
import threading


class LoopbackServer:
  """Serves `handler` (a BaseHTTPRequestHandler class) on 127.0.0.1 in a thread; `url`."""

  def __init__(self, handler):
    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


def drop_proxies(monkeypatch) -> None:
  """Loopback requests must not go through a proxy from the test machine's environment."""
  for var in list(os.environ):
    if var.lower().endswith("_proxy"):
      monkeypatch.delenv(var)
