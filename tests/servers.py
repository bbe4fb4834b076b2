"""Real local servers for publishing tests, and an in-memory keychain.

``PyPIServer`` runs ``pypiserver`` on 127.0.0.1 with htpasswd authentication (made with passlib): uploads,
downloads and listings all need a password. When the ``pypi-server`` program is missing, tests using it are
skipped, except when ``WORKBENCH_REQUIRE_SERVERS=1`` (CI sets it), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


def require_program(name: str) -> str:
    """The path of the program ``name`` (beside this Python first); skip, or fail on CI, when it is missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (pip install pypiserver passlib)"
    if os.environ.get("WORKBENCH_REQUIRE_SERVERS") == "1":
        pytest.fail(message + "; WORKBENCH_REQUIRE_SERVERS=1 requires it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PyPIServer:
    """A pypiserver on 127.0.0.1; ``users`` maps usernames to passwords. Start it with ``start()``."""

    def __init__(self, root: Path, users: dict[str, str], *, overwrite: bool = False) -> None:
        with warnings.catch_warnings():  # passlib imports the deprecated crypt module
            warnings.simplefilter("ignore", DeprecationWarning)
            from passlib.apache import HtpasswdFile

        self.program = require_program("pypi-server")
        self.root = root
        self.packages = root / "packages"
        self.packages.mkdir(parents=True, exist_ok=True)
        self.htpasswd = root / "htpasswd"
        table = HtpasswdFile(str(self.htpasswd), new=True, default_scheme="apr_md5_crypt")
        for user, password in users.items():
            table.set_password(user, password)
        table.save()
        self.users = dict(users)
        self.overwrite = overwrite
        self.port = free_port()
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The upload address."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple_url(self) -> str:
        return f"{self.url}simple/"

    def simple_url_for(self, user: str) -> str:
        """The index address with ``user``'s password in it (for pip)."""
        return f"http://{user}:{self.users[user]}@127.0.0.1:{self.port}/simple/"

    def start(self, timeout: float = 30.0) -> PyPIServer:
        """Start (or restart, on the same port and folder) and wait until it answers."""
        args = [self.program, "run", "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.htpasswd),
                "-a", "update,download,list", *(["--overwrite"] if self.overwrite else []), str(self.packages)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pypiserver exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pypiserver did not answer within {timeout:.0f} s")

    def kill(self) -> None:
        """Kill the server at once (as a crash would)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class MemoryKeyring(KeyringBackend):
    """A keychain that lives in this process only: tests never touch a real one, nor write secrets to disk."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


def use_memory_keyring(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """Make ``keyring`` use a fresh :class:`MemoryKeyring` for this test (restored afterwards)."""
    import keyring.core

    backend = MemoryKeyring()
    monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
    return backend


def use_keyring_backend(monkeypatch: pytest.MonkeyPatch, backend: KeyringBackend) -> None:
    import keyring.core

    monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
