"""A small HTTP server on 127.0.0.1 that serves netron's page and the files of one model, and nothing else.

Netron's own files are served from the installed ``netron`` package, with a few changes made in memory
(the package on disk is never modified) so that the page works offline and indefinitely:

* ``<meta name="date">`` is removed, so netron takes the time the page opened as its build date and never
  asks to be updated ("Please update to the newest version" once the build is more than 180 days old);
* netron is told it is not a packaged release (``packaged: false`` in ``browser.js``), which turns off its
  Google Analytics telemetry and the "Report" buttons that open GitHub;
* the page arrives with the cookie ``consent`` already set, which is what netron checks before asking
  ``https://ipinfo.io/json`` where the user is and showing its cookie-consent dialog;
* the angle brackets around tensor shapes (CJK U+3008/U+3009, missing from most Latin fonts, so drawn as
  boxes) become the mathematical ones U+27E8/U+27E9 that common fonts such as DejaVu Sans have;
* the model is named in ``<meta name="file" content="data/NAME">``, the way ``netron.serve`` does it.

Every URL lives under a random secret prefix, and the ``Host`` header must name this server, so neither
another local user nor a web page using DNS rebinding can read the model through it.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path

log = logging.getLogger(__name__)

DATA_PREFIX = "data/"
CONSENT_COOKIE = "consent"  # when set, netron neither asks ipinfo.io where the user is nor shows its consent dialog
MIME_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
    ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon", ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Patch:
    """One in-memory change to a netron file: ``pattern`` (a regular expression) becomes ``replacement``."""

    file: str
    purpose: str
    pattern: str
    replacement: str
    count: int = 1  # occurrences to replace; 0 for all


PATCHES: tuple[Patch, ...] = (
    Patch("index.html", "no expiry: netron uses the time the page opened as its build date",
          r'<meta name="date" content="[^"]*">\n?', ""),
    Patch("browser.js", "no telemetry and no 'Report' links: netron is told it is not a packaged release",
          r"packaged: this\._meta\.version && this\._meta\.version\[0\] !== '0\.0\.0',", "packaged: false,"),
    Patch("view.js", "shapes use the left angle bracket U+27E8 of common fonts, not the CJK U+3008",
          r"\\u3008", r"\\u27E8", count=0),
    Patch("view.js", "shapes use the right angle bracket U+27E9 of common fonts, not the CJK U+3009",
          r"\\u3009", r"\\u27E9", count=0),
)


def netron_dir() -> Path:
    """The folder of the installed ``netron`` package."""
    spec = find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The netron package is not installed; install it with 'pip install netron'.")
    return Path(next(iter(spec.submodule_search_locations)))


def patched_text(name: str, text: str) -> tuple[str, list[Patch]]:
    """``text`` of netron's file ``name`` with the :data:`PATCHES` applied, and the patches that did not match."""
    missing = []
    for patch in PATCHES:
        if patch.file != name:
            continue
        text, count = re.subn(patch.pattern, patch.replacement, text, count=patch.count)
        if count == 0:
            missing.append(patch)
    return text, missing


@dataclass(frozen=True)
class ServedModel:
    """A model file and its companion files, keyed by their path relative to the model's folder."""

    path: Path
    files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, path: Path, companions: Iterable[Path] = ()) -> ServedModel:
        """The model at ``path`` plus ``companions`` (external data, weights), all readable by netron."""
        path = Path(path)
        files = {path.name: path}
        for extra in companions:
            extra = Path(extra)
            try:
                key = extra.resolve().relative_to(path.resolve().parent).as_posix()
            except ValueError:
                key = extra.name
            files.setdefault(key, extra)
        return cls(path, files)


class _Server(ThreadingHTTPServer):
    """Threading server that waits for its request threads on close and can cut open connections."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, prefix: str, static: dict[str, Path]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.prefix = prefix
        self.static = static
        self.patched: dict[str, bytes] = {}
        self.model: ServedModel | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.discard(request)

    def handle_error(self, request: object, client_address: object) -> None:
        """A page that went away mid-transfer (a new model, a closed view) is expected; no traceback."""
        log.debug("netron server: a request from %s ended early: %s", client_address, sys.exc_info()[1])

    def cut_connections(self) -> None:
        """Unblock request threads waiting on idle connections, so they end at once."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # seconds an idle connection may stay open

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        server = self.server
        if self.headers.get("Host") != f"127.0.0.1:{server.server_address[1]}":
            self.send_error(HTTPStatus.FORBIDDEN)
            return
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not path.startswith(server.prefix):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        name = path[len(server.prefix):] or "index.html"
        model = server.model
        if name == "index.html":
            self._send_bytes(_index_html(server, model), MIME_TYPES[".html"], page=True)
        elif name.startswith(DATA_PREFIX) and model is not None and name[len(DATA_PREFIX):] in model.files:
            self._send_file(model.files[name[len(DATA_PREFIX):]], "application/octet-stream")
        elif name in server.patched:
            self._send_bytes(server.patched[name], MIME_TYPES[Path(name).suffix])
        elif name in server.static:
            self._send_file(server.static[name], MIME_TYPES[Path(name).suffix])
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send_bytes(self, body: bytes, content_type: str, page: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self._headers(content_type, len(body))
        if page:
            self.send_header("Set-Cookie", f"{CONSENT_COOKIE}={int(time.time() * 1000)}; Path=/; SameSite=Strict")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, path: Path, content_type: str) -> None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below, after streaming
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with fh:
            self.send_response(HTTPStatus.OK)
            self._headers(content_type, path.stat().st_size)
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(fh, self.wfile, 1 << 20)

    def _headers(self, content_type: str, length: int) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")

    def log_message(self, format: str, *args: object) -> None:
        log.debug("netron server: " + format, *args)


def _index_html(server: _Server, model: ServedModel | None) -> bytes:
    """Netron's page, with the metadata that tells it which file to open (as ``netron.serve`` writes it)."""
    text = server.patched["index.html"].decode("utf-8")
    if model is not None:
        name = html.escape(model.path.name, quote=True)
        meta = (f'<meta name="type" content="Python">\n'
                f'<meta name="file" content="{DATA_PREFIX}{urllib.parse.quote(model.path.name)}">\n'
                f'<meta name="name" content="{name}">\n'
                f'<meta name="identifier" content="{name}">\n')
        text = text.replace("<title>", meta + "<title>", 1)
    return text.encode("utf-8")


class NetronServer:
    """Serves netron and the current model at ``url`` from a background thread until :meth:`stop`."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.missing_patches: list[Patch] = []

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (0 when stopped)."""
        return self._server.server_address[1] if self._server is not None else 0

    @property
    def url(self) -> str:
        """The address of netron's page (empty when stopped)."""
        if self._server is None:
            return ""
        return f"http://127.0.0.1:{self.port}{self._server.prefix}"

    def start(self) -> None:
        """Start serving (no model yet). Does nothing if already running."""
        if self._server is not None:
            return
        folder = netron_dir()
        static = {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix in MIME_TYPES}
        server = _Server(f"/{secrets.token_urlsafe(16)}/", static)
        self.missing_patches = []
        for name in {"index.html"} | {p.file for p in PATCHES}:
            text, missing = patched_text(name, (folder / name).read_text(encoding="utf-8"))
            server.patched[name] = text.encode("utf-8")
            self.missing_patches += missing
        for patch in self.missing_patches:
            log.warning("netron %s changed; could not apply: %s", patch.file, patch.purpose)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"netron-server-{self.port}", daemon=True)
        self._thread.start()

    def serve(self, model: ServedModel | None) -> str:
        """Make ``model`` the one the page opens (None: netron's empty page); returns the page's address."""
        self.start()
        assert self._server is not None
        self._server.model = model
        return self.url

    def stop(self) -> None:
        """Stop serving and wait until every server thread has ended."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if thread is not None:
            thread.join()
