"""A local HTTP server standing in for SaaS vendors: planned answers per (method, path), every request recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class VendorServer:
    """Answers each (method, path) with the next of its planned answers (the last one repeats), and records all."""

    base: str = ""
    received: list[Received] = field(default_factory=list)
    answers: dict[tuple[str, str], list[tuple[int, dict[str, str], Any, float]]] = field(default_factory=dict)

    def plan(self, method: str, path: str, *answers: tuple[int, dict[str, str], Any, float]) -> None:
        self.answers[(method, path)] = list(answers)

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path.split("?")[0] == path]


def _handler(server: VendorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            server.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
            planned = server.answers.get((self.command, self.path.split("?")[0]), [(200, {}, {}, 0.0)])
            status, headers, payload, delay = planned.pop(0) if len(planned) > 1 else planned[0]
            if delay:
                time.sleep(delay)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as a timeout test wants

        do_POST = do_PUT = do_GET = _answer  # noqa: N815 - the http.server API

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
            pass

    return Handler


@pytest.fixture
def vendors() -> Iterator[VendorServer]:
    state = VendorServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
