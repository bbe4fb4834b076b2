"""Shared fixtures. Tests never touch the user's real home, config, cache or keychain."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS_SCRIPT = ROOT / "tests" / "corpus" / "make_corpus.py"


def pytest_configure(config: pytest.Config) -> None:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:  # tqdm (pulled in by torch.fx, twine, huggingface_hub) otherwise starts a monitor thread per run
        import tqdm

        tqdm.tqdm.monitor_interval = 0
    except ImportError:
        pass
    os.environ.setdefault("QT_LOGGING_RULES", "qt.webenginecontext.debug=false")
    try:
        from workbench.gui.qt import prepare_web_engine_environment
    except ImportError:  # PySide6 missing: the GUI tests will fail on import and say so
        return
    prepare_web_engine_environment()  # must precede the QApplication that pytest-qt creates


@pytest.fixture(autouse=True)
def no_dangling_work() -> object:
    """Fail any test that leaves a background task or a Python thread running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    if "workbench.gui.tasks" in sys.modules:
        from workbench.gui import tasks

        assert tasks.wait_for_all(10_000), f"background tasks still running: {tasks.active_tasks()}"
        assert tasks.pool().activeThreadCount() == 0
    deadline = time.monotonic() + 5
    while True:
        left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                and not isinstance(t, threading._DummyThread)]  # type: ignore[attr-defined]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"threads left running: {[t.name for t in left]}"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, XDG folders and keyring at a fresh temporary folder for every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CACHE_HOME", ".cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    if "PySide6.QtCore" in sys.modules:  # Qt caches the settings folder: point it at this test's home
        from PySide6.QtCore import QSettings

        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(fmt, QSettings.Scope.UserScope, str(home / ".config"))
    return home


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regression corpus, built once per run by the real libraries (see tests/corpus/make_corpus.py)."""
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(CORPUS_SCRIPT), str(out)], check=True)
    return out


def run_cli(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None,
            unset: tuple[str, ...] = (), **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``workbench`` in a fresh interpreter, as a user would."""
    env = dict(os.environ)
    for var in ("WORKBENCH_DEBUG", *unset):
        env.pop(var, None)
    env["PYTHONPATH"] = str(ROOT / "tests" / "corpus")  # so trusted pickles can import corpus_models
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The main window, shown offscreen; the project's variants go to ``tmp_path / "out"``."""
    from workbench.gui.main_window import MainWindow

    monkeypatch.setenv("WORKBENCH_OUTPUT_DIR", str(tmp_path / "out"))
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def open_in(qtbot, window, path: Path | str, timeout: int = 60_000):  # type: ignore[no-untyped-def]
    """Open ``path`` in the window as a user would, and return the document once it is shown."""
    with qtbot.waitSignal(window.document_loaded, timeout=timeout) as blocker:
        window.open_path(str(path))
    return blocker.args[0]
