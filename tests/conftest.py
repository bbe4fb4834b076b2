"""Shared fixtures. Tests never touch the user's real home, config, cache or keychain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS_SCRIPT = ROOT / "tests" / "corpus" / "make_corpus.py"


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
    return home


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regression corpus, built once per run by the real libraries (see tests/corpus/make_corpus.py)."""
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(CORPUS_SCRIPT), str(out)], check=True)
    return out


def run_cli(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``workbench`` in a fresh interpreter, as a user would."""
    env = dict(os.environ)
    env.pop("WORKBENCH_DEBUG", None)
    env["PYTHONPATH"] = str(ROOT / "tests" / "corpus")  # so trusted pickles can import corpus_models
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, **kwargs)  # type: ignore[call-overload]
