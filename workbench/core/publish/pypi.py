"""Upload a wheel to PyPI, TestPyPI or any package index that takes uploads the way PyPI does, with twine.

twine is used as a library: it reads and checks the wheel's metadata, builds the upload form and sends it
(with its own retries on server errors). We add a progress report and Cancel on every chunk sent, time
limits, and translate the server's answers into plain messages: wrong token, server down, version already
published ("bump the version"). An upload either completes on the server or leaves nothing: a retry of a
failed upload is always safe, and a retry after an upload that in fact arrived is recognised (same file).

Credentials are passed in, or read from the keychain (:mod:`workbench.core.credentials`) under the upload
address and ``__token__`` (or the given username): the same place ``twine upload`` looks.
"""

from __future__ import annotations

import html
import re
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..credentials import PYPI_UPLOAD_URL, TESTPYPI_UPLOAD_URL, TOKEN_USERNAME, key_for, require_secret
from ..errors import FileProblem
from ..jobs import Job, SubJob
from ..package.wheel import PYPI_FILE_LIMIT, WheelPlan, WheelResult, build_wheel, file_sha256
from ..text import format_bytes
from . import AlreadyPublished, AuthenticationFailed, PublishError, ServerUnreachable, UploadRejected

INDEXES = {"pypi": PYPI_UPLOAD_URL, "testpypi": TESTPYPI_UPLOAD_URL}
CONNECT_TIMEOUT = 15.0  # seconds to open the connection
READ_TIMEOUT = 300.0  # seconds the server may stay silent (while receiving, or checking the upload)
# Part of the progress bar for building when building and uploading: deflating runs at ~25 MB/s here
# (bench_publish.py), about as fast as a good connection uploads.
BUILD_SHARE = 0.4


@dataclass(frozen=True)
class PackageIndex:
    """A package index, by its upload address, with the addresses people install from."""

    upload_url: str

    @property
    def label(self) -> str:
        return {PYPI_UPLOAD_URL: "PyPI", TESTPYPI_UPLOAD_URL: "TestPyPI"}.get(self.upload_url, self.upload_url)

    @property
    def is_public(self) -> bool:
        return self.upload_url in (PYPI_UPLOAD_URL, TESTPYPI_UPLOAD_URL)

    @property
    def credential_target(self) -> str:
        return "testpypi" if self.upload_url == TESTPYPI_UPLOAD_URL else "pypi"

    @property
    def simple_url(self) -> str:
        """The index pip installs from (a guess, ``/simple/`` on the same server, for other indexes)."""
        if self.upload_url == PYPI_UPLOAD_URL:
            return "https://pypi.org/simple/"
        if self.upload_url == TESTPYPI_UPLOAD_URL:
            return "https://test.pypi.org/simple/"
        return urljoin(self.upload_url, "/simple/")

    def project_url(self, project: str, version: str) -> str:
        if self.upload_url == PYPI_UPLOAD_URL:
            return f"https://pypi.org/project/{project}/{version}/"
        if self.upload_url == TESTPYPI_UPLOAD_URL:
            return f"https://test.pypi.org/project/{project}/{version}/"
        return f"{self.simple_url}{project}/"

    def install_command(self, project: str, version: str) -> str:
        if self.upload_url == PYPI_UPLOAD_URL:
            return f"pip install {project}=={version}"
        extra = " --extra-index-url https://pypi.org/simple/" if self.upload_url == TESTPYPI_UPLOAD_URL else ""
        return f"pip install --index-url {self.simple_url}{extra} {project}=={version}"


def index_for(where: str | None) -> PackageIndex:
    """``pypi``, ``testpypi`` or an upload address (``https://host/legacy/``) as a :class:`PackageIndex`."""
    where = (where or "pypi").strip()
    url = INDEXES.get(where.lower(), where)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise PublishError("The index address must not hold a username or password.",
                           hint="Give the address alone, and save the password with `workbench credentials set pypi "
                                "--url URL --username NAME` or the 'Save token…' button.")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PublishError(f"'{where}' is not an index address.", url=where,
                           hint="Give pypi, testpypi, or the full upload address, e.g. https://upload.pypi.org/legacy/.")
    return PackageIndex(url)


@dataclass
class PublishResult:
    """A wheel that is now on an index."""

    wheel: Path
    project: str
    version: str
    repository_url: str
    size_bytes: int
    sha256: str
    seconds: float
    project_url: str
    install_command: str
    already_there: bool = False  # the identical file was already published (e.g. by an earlier attempt)
    warnings: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        index = PackageIndex(self.repository_url).label
        if self.already_there:
            return f"{self.project} {self.version} was already on {index} (the very same file)"
        return f"Published {self.project} {self.version} to {index}"

    @property
    def message(self) -> str:
        return f"{self.headline}: {self.project_url}"

    def to_dict(self) -> dict[str, Any]:
        return {"wheel": str(self.wheel), "project": self.project, "version": self.version,
                "repository_url": self.repository_url, "size_bytes": self.size_bytes, "sha256": self.sha256,
                "seconds": round(self.seconds, 3), "project_url": self.project_url,
                "install_command": self.install_command, "already_there": self.already_there,
                "message": self.message, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class ConnectionCheck:
    """The index answered and took the credentials."""

    repository_url: str
    username: str
    status: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"repository_url": self.repository_url, "username": self.username, "status": self.status,
                "message": self.message}


def credentials_for(index: PackageIndex, username: str | None = None, password: str | None = None) -> tuple[str, str]:
    """The username and secret to use: as given, or the secret saved in the keychain for this index."""
    user = username or TOKEN_USERNAME
    if password:
        return user, password
    return user, require_secret(key_for(index.credential_target, index.upload_url, user))


def check_connection(repository_url: str | None = None, *, username: str | None = None,
                     password: str | None = None) -> ConnectionCheck:
    """Ask the index whether it takes these credentials, without publishing anything.

    Sends an upload request with no file: an index checks the credentials first (refusing bad ones with 401
    or 403), then refuses the empty upload (400), which is the answer we hope for.
    """
    import requests
    from requests_toolbelt import MultipartEncoder
    from twine.utils import make_requests_session

    index = index_for(repository_url)
    user, secret = credentials_for(index, username, password)
    form = MultipartEncoder([(":action", "file_upload"), ("protocol_version", "1")])
    with make_requests_session() as session:
        session.auth = (user, secret)
        try:
            resp = session.post(index.upload_url, data=form, headers={"Content-Type": form.content_type},
                                allow_redirects=False, timeout=(CONNECT_TIMEOUT, 60))
        except requests.exceptions.RequestException as exc:
            raise _unreachable(index, exc, sent=0) from None
        with resp:
            if resp.status_code in (400, 422) or resp.ok:
                return ConnectionCheck(index.upload_url, user, resp.status_code,
                                       f"{index.label} answered and accepted the credentials of {user}.")
            raise _refusal(index, resp, user, what="the connection test")


def publish_wheel(wheel: str | Path, *, repository_url: str | None = None, username: str | None = None,
                  password: str | None = None, job: Job | None = None) -> PublishResult:
    """Upload ``wheel`` to the index (PyPI by default) with twine, reporting progress; Cancel stops it."""
    import requests
    from packaging.utils import canonicalize_name
    from twine.exceptions import InvalidDistribution
    from twine.package import PackageFile
    from twine.repository import Repository

    job = job or Job()
    index = index_for(repository_url)
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileProblem(f"{wheel} does not exist.", hint="Build the package first.", path=wheel)
    user, secret = credentials_for(index, username, password)
    job.progress(0, None, f"Reading {wheel.name}")
    try:
        package = PackageFile.from_filename(str(wheel), comment=None)
    except InvalidDistribution as exc:
        raise FileProblem(f"{wheel.name} is not a package twine can upload: {exc}.", path=wheel) from None
    size = wheel.stat().st_size
    warnings = []
    if index.is_public and size > PYPI_FILE_LIMIT:
        warnings.append(f"{wheel.name} is {format_bytes(size)}, over {index.label}'s default limit of "
                        f"{format_bytes(PYPI_FILE_LIMIT)}; it is refused unless the project has a higher limit.")
    repository = Repository(index.upload_url, user, secret, disable_progress_bar=True)
    sent = _watch_uploads(repository, job, f"Uploading {wheel.name} to {index.label}")
    start = time.perf_counter()
    try:
        resp = repository.upload(package)
    except requests.exceptions.RequestException as exc:
        raise _unreachable(index, exc, sent=sent[0], total=size) from None
    finally:
        repository.close()
    project, version = canonicalize_name(package.metadata["name"]), package.version
    result = PublishResult(wheel, project, version, index.upload_url, size, package.sha2_digest or file_sha256(wheel),
                           time.perf_counter() - start, index.project_url(project, version),
                           index.install_command(project, version), warnings=warnings)
    with resp:
        if 200 <= resp.status_code < 300:
            job.progress(1, 1, "Published")
            return result
        if _already_exists(resp):
            there = None if index.is_public else _published_digest(index, project, wheel.name, (user, secret))
            if there == result.sha256:
                result.already_there = True
                return result
            if there is not None:
                raise AlreadyPublished(
                    f"{index.label} already has a different {wheel.name} (perhaps an incomplete copy left by an "
                    f"interrupted upload), and does not let it be replaced.", url=index.upload_url,
                    hint="Bump the version and publish again, or ask the index's administrator to remove that file.")
            raise AlreadyPublished(
                f"{project} {version} is already published on {index.label}, and a published version can never be "
                f"replaced.", url=index.upload_url,
                hint="Bump the version (for example to the next patch number), build again and publish that.")
        if resp.status_code == 413 or "too large" in _answer(resp).lower():
            raise UploadRejected(f"{index.label} refused {wheel.name} ({format_bytes(size)}) as too large.",
                                 url=index.upload_url, hint="Ask the index for a higher limit, or publish the model "
                                                            "on the Hugging Face Hub, which suits large files.")
        raise _refusal(index, resp, user, what=f"the upload of {wheel.name}")


def build_and_publish(plan: WheelPlan, out_dir: str | Path, *, repository_url: str | None = None,
                      username: str | None = None, password: str | None = None,
                      job: Job | None = None) -> tuple[WheelResult, PublishResult]:
    """Build the planned wheel into ``out_dir``, then upload it: what the Publish page and the CLI do."""
    job = job or Job()
    index = index_for(repository_url)
    user, secret = credentials_for(index, username, password)  # before the build: no token, no waiting
    built = build_wheel(plan, out_dir, job=SubJob(job, 0.0, BUILD_SHARE))
    published = publish_wheel(built.path, repository_url=index.upload_url, username=user, password=secret,
                              job=SubJob(job, BUILD_SHARE, 1.0))
    published.warnings = list(dict.fromkeys(built.warnings + published.warnings))
    return built, published


# -- talking to the server ------------------------------------------------------------------------------


def _watch_uploads(repository: Any, job: Job, message: str) -> list[int]:
    """Make the repository's uploads report progress, honour Cancel and time out; returns [bytes sent]."""
    from requests_toolbelt import MultipartEncoderMonitor

    sent = [0]
    _abort_on_close(repository.session)
    post = repository.session.post

    def report(monitor: Any) -> None:
        sent[0] = monitor.bytes_read
        job.progress(monitor.bytes_read, monitor.len, message)  # raises Cancelled: the request is dropped

    def watched_post(url: str, data: Any = None, **kwargs: Any) -> Any:
        if hasattr(data, "read") and hasattr(data, "len"):
            data = MultipartEncoderMonitor(data, report)
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        return post(url, data=data, **kwargs)

    repository.session.post = watched_post
    return sent


def _abort_on_close(session: Any) -> None:
    """Close upload connections with a reset, not a normal end: a server then cannot take a cancelled, cut-off
    upload for a complete one (pypiserver would save the part it got as the package)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection

    options = [*HTTPConnection.default_socket_options,
               (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0))]

    class ResettingAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **{**kwargs, "socket_options": options})

    for prefix, adapter in list(session.adapters.items()):
        session.mount(prefix, ResettingAdapter(max_retries=adapter.max_retries))


def _already_exists(resp: Any) -> bool:
    # pypiserver answers 409; PyPI and most others 400 "File already exists"
    return resp.status_code == 409 or (resp.status_code in (400, 403) and "already exist" in _answer(resp).lower())


def _published_digest(index: PackageIndex, project: str, filename: str, auth: tuple[str, str]) -> str | None:
    """The sha256 the index lists for ``filename`` (from its simple page), or None if it cannot tell."""
    import requests
    from twine.utils import make_requests_session

    with make_requests_session() as session:
        session.auth = auth
        try:
            resp = session.get(f"{index.simple_url}{project}/", timeout=(CONNECT_TIMEOUT, 60))
        except requests.exceptions.RequestException:
            return None
        with resp:
            if not resp.ok:
                return None
            for href in re.findall(r'href="([^"]+)"', resp.text):
                target, _, fragment = html.unescape(href).partition("#")
                if target.rsplit("/", 1)[-1] == filename and fragment.startswith("sha256="):
                    return fragment.split("=", 1)[1]
    return None


def _answer(resp: Any) -> str:
    """The server's reason in plain text, short (page markup and styles stripped)."""
    text = re.sub(r"(?is)<(style|script|title|head)\b.*?</\1>|<[^>]+>", " ", resp.text or "")
    text = " ".join(html.unescape(text).split())[:300]
    reason = " ".join((resp.reason or "").split())
    if not text or reason.lower() in text.lower() and len(text) < 2 * len(reason):
        return reason or text
    return f"{reason}: {text}" if reason and reason.lower() not in text.lower() else text


def _refusal(index: PackageIndex, resp: Any, user: str, *, what: str) -> PublishError:
    status, answer = resp.status_code, _answer(resp)
    if status in (401, 403):
        reason = " ".join((resp.reason or "").split()) or "refused"
        saved = f"workbench credentials set {index.credential_target}" + (
            "" if index.is_public else f" --url {index.upload_url}") + (
            "" if user == TOKEN_USERNAME else f" --username {user}")
        return AuthenticationFailed(
            f"{index.label} refused the credentials of {user} ({status} {reason}).", url=index.upload_url,
            hint=f"Check the token or password (`{saved}` saves a new one) and that it may upload this project.")
    if resp.is_redirect or 300 <= status < 400:
        return UploadRejected(f"{index.upload_url} sends uploads elsewhere ({status} to "
                              f"{resp.headers.get('location', '?')}), so it is probably not the upload address.",
                              url=index.upload_url, hint="For PyPI use https://upload.pypi.org/legacy/.")
    if status in (404, 405):
        return UploadRejected(f"{index.upload_url} does not take uploads ({status} {answer}).", url=index.upload_url,
                              hint="Check the address: it is the upload address, not the one pip installs from.")
    if status >= 500:
        return UploadRejected(f"{index.label} had a problem of its own during {what} ({status} {answer}).",
                              url=index.upload_url, hint="Try again later; nothing was published.")
    return UploadRejected(f"{index.label} refused {what}: {status} {answer}.", url=index.upload_url)


def _unreachable(index: PackageIndex, exc: Exception, *, sent: int, total: int | None = None) -> ServerUnreachable:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return ServerUnreachable(f"The secure connection to {index.upload_url} failed (its certificate was not "
                                 f"accepted).", url=index.upload_url, hint="Check the address and the system clock.")
    if sent and total:
        return ServerUnreachable(
            f"The connection to {index.upload_url} broke during the upload, after {format_bytes(sent)}; the server "
            f"did not confirm it.", url=index.upload_url,
            hint="Publish again: retrying is safe (should the index have kept an incomplete copy, you will be told).")
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerUnreachable(f"{index.upload_url} did not answer in time.", url=index.upload_url,
                                 hint="Check the address and your network, then try again.")
    return ServerUnreachable(f"Could not connect to {index.upload_url}: the server is down or the address is wrong.",
                             url=index.upload_url, hint="Check the address and your network, then try again.")
