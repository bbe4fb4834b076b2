"""Publishing to a real package index: pypiserver on 127.0.0.1 with htpasswd authentication.

The sample model goes through the Publish page (the code the window runs), is installed with pip into a fresh
virtual environment from that server, and must predict exactly what onnxruntime computes on the original.
Also: wrong password, server down, server killed mid-upload, Cancel mid-upload, duplicate versions, the
command line with twine reading the same keychain entry, and no file written anywhere holds the token.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper
from servers import PyPIServer, use_memory_keyring

from workbench.core.errors import Cancelled
from workbench.core.jobs import Job, Progress
from workbench.core.package.wheel import WheelResult, package_pypi
from workbench.core.publish import AlreadyPublished, AuthenticationFailed, ServerUnreachable, UploadRejected
from workbench.core.publish.pypi import check_connection, publish_wheel
from workbench.resources import sample_dir, sample_model

TOKEN = "pypi-" + secrets.token_urlsafe(32)  # the uploader's secret; no file may ever contain it
READER = "reader-" + secrets.token_urlsafe(8)  # pip's password for downloads (not the secret under test)
BIN = "Scripts" if os.name == "nt" else "bin"


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = PyPIServer(tmp_path / "server", {"__token__": TOKEN, "reader": READER}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy and onnxruntime (with what they need) as wheels, the versions this test environment runs.

    Fetched once with this machine's pip configuration; the fresh virtual environment installs them from here
    and our package from the test index only, so it proves the package's own dependency list is enough.
    """
    out = tmp_path_factory.mktemp("wheelhouse")
    wanted = [f"{d}=={importlib.metadata.version(d)}" for d in ("numpy", "onnxruntime")]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", "-d", str(out), *wanted], check=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def big_wheel(tmp_path_factory: pytest.TempPathFactory) -> WheelResult:
    """A wheel of about 6 MB (random weights do not compress), so an upload takes many chunks."""
    folder = tmp_path_factory.mktemp("big")
    w = np.random.default_rng(0).standard_normal((768, 2048)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 768])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2048])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), folder / "big.onnx",
              save_as_external_data=True, location="big.onnx.data")
    return package_pypi(folder / "big.onnx", folder / "dist", name="big-model", version="1.0.0",
                        license_expression="MIT")


def _wait(qtbot, task) -> None:  # type: ignore[no-untyped-def]
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=120_000):
        pass


def _files_holding(roots: list[Path], needles: list[bytes]) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(n in data for n in needles):
                    found.append(path)
    return found


def _needles() -> list[bytes]:
    """The token as is, base64-encoded (how keyrings.alt's plaintext file keeps it), and in a Basic auth header."""
    return [TOKEN.encode(), base64.b64encode(TOKEN.encode()), base64.b64encode(f"__token__:{TOKEN}".encode())]


def _fresh_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    return folder / BIN / "python"


def test_publish_page_then_pip_install_and_predict(qtbot, server: PyPIServer, wheelhouse: Path,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path, isolated_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from workbench.core.formats import open_model
    from workbench.gui.publish_page import PublishPage
    from workbench.gui.qt import QtWidgets

    monkeypatch.setenv("WORKBENCH_OUTPUT_DIR", str(tmp_path / "out"))
    keychain = use_memory_keyring(monkeypatch)
    page = PublishPage(lambda task: task.run_in_background())
    qtbot.addWidget(page)
    page.show()
    page.set_document(open_model(sample_model()))
    assert page.pypi.name.text() == "digits-cnn"
    page.pypi.version.setText("1.2.0")
    page.set_license("MIT", {"LICENSE": "MIT License\n"})
    page.pypi.index.setCurrentIndex(2)  # another index
    page.pypi.url.setText(server.url)
    page.pypi.url.editingFinished.emit()
    assert "API token for __token__: not saved yet" in page.pypi.credential_label.text()
    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: (TOKEN, True))  # the user types it
    page.pypi.save_token_button.click()
    assert keychain.secrets == {(server.url, "__token__"): TOKEN}
    assert "API token for __token__: saved" in page.pypi.credential_label.text()

    _wait(qtbot, page.test_connection())
    assert "accepted the credentials of __token__" in page.result.text()
    progress: list[Progress] = []
    _wait(qtbot, page.publish())  # checks the settings and lays out the wheel, then starts the upload
    assert page.last_task is not None
    page.last_task.progressed.connect(progress.append)
    _wait(qtbot, page.last_task)
    assert f"Published digits-cnn 1.2.0 to {server.url}" in page.result.text(), page.result.text()
    assert f"{server.simple_url}digits-cnn/" in page.result.text()
    wheel = tmp_path / "out" / "digits_cnn" / "dist" / "digits_cnn-1.2.0-py3-none-any.whl"
    assert (server.packages / wheel.name).read_bytes() == wheel.read_bytes()
    assert progress and progress[-1].fraction == 1.0

    python = _fresh_venv(tmp_path / "venv")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated", "--no-cache-dir",
         "--no-compile", "--disable-pip-version-check", "--index-url", server.simple_url_for("reader"),
         "--find-links", str(wheelhouse), "digits-cnn==1.2.0"], check=False, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    def outside(*args: str) -> subprocess.CompletedProcess[str]:
        """Run in the new environment, away from this checkout and this test run's Python settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        return subprocess.run(args, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert outside(str(python), "-c", "import workbench").returncode != 0  # a clean environment
    images = np.load(sample_dir() / "digits_test.npz")["x"]
    expected = ort.InferenceSession(str(sample_model()), providers=["CPUExecutionProvider"]).run(
        None, {"image": images})[0]
    np.savez(tmp_path / "inputs.npz", image=images)
    code = ("import sys, numpy as np, digits_cnn; "
            "np.save(sys.argv[2], digits_cnn.predict(np.load(sys.argv[1])['image'])['logits'])")
    api = outside(str(python), "-c", code, str(tmp_path / "inputs.npz"), str(tmp_path / "api.npy"))
    assert api.returncode == 0, api.stderr
    assert np.array_equal(np.load(tmp_path / "api.npy"), expected)
    command = outside(str(tmp_path / "venv" / BIN / "digits-cnn-predict"), str(tmp_path / "inputs.npz"), "-o",
                      str(tmp_path / "command.npy"))
    assert command.returncode == 0, command.stderr
    assert np.array_equal(np.load(tmp_path / "command.npy"), expected)

    written = [p for p in isolated_home.rglob("*") if p.is_file()]
    assert any(server.url.encode() in p.read_bytes() for p in written)  # the settings remember the address...
    assert _files_holding([isolated_home, tmp_path], _needles()) == []  # ...and nothing anywhere holds the token


def test_a_missing_server_program_skips_here_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from servers import require_program

    monkeypatch.delenv("WORKBENCH_REQUIRE_SERVERS", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_program("no-such-server-program")
    monkeypatch.setenv("WORKBENCH_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="WORKBENCH_REQUIRE_SERVERS=1 requires it"):
        require_program("no-such-server-program")


def test_wrong_password_and_server_down(server: PyPIServer, tmp_path: Path) -> None:
    built = package_pypi(sample_model(), tmp_path / "dist", name="digits-cnn", version="1.0.0")
    for attempt in (lambda: check_connection(server.url, password="wrong"),
                    lambda: publish_wheel(built.path, repository_url=server.url, password="wrong")):
        with pytest.raises(AuthenticationFailed, match="refused the credentials of __token__") as refused:
            attempt()
        assert "wrong" not in str(refused.value) and "credentials set pypi --url" in str(refused.value)
    assert list(server.packages.iterdir()) == []
    server.stop()
    for attempt in (lambda: check_connection(server.url, password=TOKEN),
                    lambda: publish_wheel(built.path, repository_url=server.url, password=TOKEN)):
        with pytest.raises(ServerUnreachable, match="Could not connect to http://127.0.0.1"):
            attempt()


def _upload_interrupted(server: PyPIServer, wheel: Path, interrupt: str) -> BaseException:
    """Upload ``wheel``, and once 1 MB is sent, kill the server or press Cancel; returns the error raised."""
    job = Job(min_interval=0)

    def on_progress(p: Progress) -> None:
        if p.total and p.total > 1 and p.done > 1_000_000:
            if interrupt == "cancel":
                job.cancel()
            else:
                server.kill()

    job._on_progress = on_progress
    with pytest.raises((ServerUnreachable, Cancelled)) as err:
        publish_wheel(wheel, repository_url=server.url, password=TOKEN, job=job)
    return err.value


@pytest.mark.parametrize("interrupt", ["kill", "cancel"])
def test_interrupted_upload_leaves_nothing_and_a_retry_succeeds(server: PyPIServer, big_wheel: WheelResult,
                                                                 interrupt: str) -> None:
    error = _upload_interrupted(server, big_wheel.path, interrupt)
    if interrupt == "kill":
        assert isinstance(error, ServerUnreachable) and "broke during the upload" in str(error)
        assert "retrying is safe" in str(error)
        server.start()
    else:
        assert isinstance(error, Cancelled)
        time.sleep(0.5)  # give the server time to (wrongly) store what it got, if it were going to
    assert list(server.packages.iterdir()) == []  # nothing half-published
    result = publish_wheel(big_wheel.path, repository_url=server.url, password=TOKEN)
    assert not result.already_there and result.sha256 == big_wheel.sha256
    assert (server.packages / big_wheel.path.name).read_bytes() == big_wheel.path.read_bytes()


def test_duplicates_and_the_command_line(server: PyPIServer, tmp_path: Path, isolated_home: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(isolated_home / ".local/share"), "WORKBENCH_OUTPUT_DIR": str(tmp_path / "out")}
    saved = run_cli("credentials", "set", "pypi", "--url", server.url, input=TOKEN + "\n", extra_env=env)
    assert saved.returncode == 0, saved.stderr
    check = run_cli("publish", "pypi", "--test-connection", "--repository-url", server.url, extra_env=env)
    assert check.returncode == 0 and "accepted the credentials" in check.stdout, check.stderr
    common = ["--repository-url", server.url, "--json"]
    first = run_cli("publish", "pypi", str(sample_model()), "--name", "digits-cnn", "--version", "1.0.0",
                    "--license", "MIT", *common, extra_env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)  # stdout holds the JSON only
    wheel = Path(data["wheel"])
    assert wheel.parent == tmp_path / "out" / "digits_cnn" / "dist"
    assert data["install_command"] == f"pip install --index-url {server.simple_url} digits-cnn==1.0.0"
    again = run_cli("publish", "pypi", str(wheel), *common, extra_env=env)  # e.g. a retry after a lost answer
    assert again.returncode == 0 and json.loads(again.stdout)["already_there"] is True
    other = run_cli("publish", "pypi", str(sample_model()), "--name", "digits-cnn", "--version", "1.0.0",
                    "--summary", "changed", "-o", str(tmp_path / "other"), "--repository-url", server.url,
                    extra_env=env)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "already has a different digits_cnn-1.0.0-py3-none-any.whl" in other.stderr
    last = other.stderr.strip().splitlines()[-1]
    assert last.startswith("workbench: ") and "Bump the version" in last  # one line that says what to do

    renamed = package_pypi(sample_model(), tmp_path / "twine", name="digits-cnn", version="1.0.1")
    # (for PyPI's own address twine assumes __token__; for other indexes it needs the username, never secret)
    twine = subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                            "--repository-url", server.url, "-u", "__token__", str(renamed.path)],
                           check=False, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert twine.returncode == 0, twine.stdout + twine.stderr  # twine found the token the app saved
    with pytest.raises(AlreadyPublished, match="Bump the version"):
        publish_wheel(tmp_path / "other" / wheel.name, repository_url=server.url, password=TOKEN)

    keyring_file = isolated_home / ".local/share/python_keyring/keyring_pass.cfg"
    holding = _files_holding([isolated_home, tmp_path], _needles())
    assert holding == [keyring_file]  # only the (plaintext, as the app warned) keychain file itself


def test_publish_page_checks_before_building(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.numpy import save_file

    from workbench.core.formats import open_model
    from workbench.core.package import wheel as wh
    from workbench.gui.publish_page import PublishPage
    from workbench.gui.qt import QtWidgets

    monkeypatch.setenv("WORKBENCH_OUTPUT_DIR", str(tmp_path / "out"))
    page = PublishPage(lambda task: task.run_in_background())
    qtbot.addWidget(page)
    assert page.pypi.credential_label.text() == ""  # the keychain is not read before the page is shown
    page.show()
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(tmp_path / "weights.safetensors"))
    page.set_document(open_model(tmp_path / "weights.safetensors"))
    assert "export the model" in page.intro.text() and not page.pypi.publish_button.isEnabled()
    page.set_document(open_model(sample_model()))
    assert page.pypi.publish_button.isEnabled() and "switched off" in page.pypi.credential_label.text()
    page.pypi.name.setText("my model")
    assert page.publish() is None and "not a valid package name" in page.result.text()
    for dialog in page.findChildren(QtWidgets.QDialog):
        dialog.close()

    page.pypi.name.setText("digits-cnn")
    monkeypatch.setattr(wh, "PYPI_FILE_LIMIT", 1000)
    answers: list[str] = []

    def answer(reply: QtWidgets.QMessageBox.StandardButton):  # type: ignore[no-untyped-def]
        return lambda parent, title, text: answers.append(text) or reply

    monkeypatch.setattr(QtWidgets.QMessageBox, "question", answer(QtWidgets.QMessageBox.StandardButton.No))
    plan_task = page.build_only()
    _wait(qtbot, plan_task)
    assert page.last_task is plan_task and "Hugging Face Hub" in answers[0]  # asked, declined: nothing built
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", answer(QtWidgets.QMessageBox.StandardButton.Yes))
    _wait(qtbot, page.build_only())
    _wait(qtbot, page.last_task)
    assert "Built" in page.result.text() and "over PyPI" in page.result.text()
    assert (tmp_path / "out" / "digits_cnn" / "dist" / "digits_cnn-0.1.0-py3-none-any.whl").exists()


PYPI_ANSWERS = [  # what PyPI says, and what the user must be told
    (400, ("File already exists ('digits_cnn-1.0.0-py3-none-any.whl', with blake2_256 hash 'ab12'). See "
           "https://pypi.org/help/#file-name-reuse for more information."), AlreadyPublished, "Bump the version"),
    (403, ("Invalid or non-existent authentication information. See https://pypi.org/help/#invalid-auth for more "
           "information."), AuthenticationFailed, "Invalid or non-existent authentication information"),
    (400, "File too large. Limit for project 'digits-cnn' is 100 MB. See https://pypi.org/help#file-size-limit",
     UploadRejected, "Hugging Face Hub"),
    (400, "'1.0.0+local' is an invalid value for Version. Can't use PEP 440 local versions.", UploadRejected,
     "Can't use PEP 440 local versions"),
    (503, "Service Unavailable", UploadRejected, "had a problem of its own"),
    (301, "Moved Permanently", UploadRejected, "probably not the upload address"),
]


def test_index_answers_become_plain_messages(tmp_path: Path) -> None:
    """PyPI's own answers (status and reason phrase), replayed by a local stand-in, each get a plain message."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = list(PYPI_ANSWERS)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status, reason = answers[0][:2]
            self.send_response(status, reason)
            if status == 301:
                self.send_header("Location", "https://pypi.org/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    built = package_pypi(sample_model(), tmp_path, name="digits-cnn", version="1.0.0")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/legacy/"
    try:
        while answers:
            _, _, error, words = answers[0]
            with pytest.raises(error) as raised:
                publish_wheel(built.path, repository_url=url, password=TOKEN)
            assert words in str(raised.value) and TOKEN not in str(raised.value)
            answers.pop(0)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
