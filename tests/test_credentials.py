"""Secrets go through keyring only: backend detection, saving under the keys twine uses, and the CLI.

Tests use an in-memory keyring (``servers.MemoryKeyring``) or keyrings.alt's plaintext file under the temporary
XDG_DATA_HOME; never the real keychain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from keyring.backends import fail, null
from servers import use_keyring_backend, use_memory_keyring

from workbench.core import credentials as cr

TOKEN = "pypi-AgEIcHlwaS5vcmcCJDAwMDAtdGVzdC10b2tlbi1ub3QtcmVhbA"
PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"


def test_the_default_test_backend_is_switched_off_and_says_so() -> None:
    info = cr.backend_info()
    assert info.kind == "none" and not info.can_store and not info.secure
    assert "switched off" in info.message
    with pytest.raises(cr.NoKeychain, match="Cannot save the API token for __token__ at https://upload.pypi.org"):
        cr.save_secret(cr.key_for("pypi"), TOKEN)


def test_no_backend_at_all_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keyring_backend(monkeypatch, fail.Keyring())
    info = cr.backend_info()
    assert info.kind == "none" and not info.can_store
    assert "No keychain" in info.message and "keyrings.alt" in (info.hint or "")
    assert cr.get_secret(cr.key_for("pypi")) is None  # reading finds nothing, and does not crash
    with pytest.raises(cr.MissingCredentials, match="No keychain"):
        cr.require_secret(cr.key_for("pypi"))


def test_plaintext_file_backend_is_called_unencrypted(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    from keyrings.alt.file import PlaintextKeyring

    use_keyring_backend(monkeypatch, PlaintextKeyring())
    info = cr.backend_info()
    assert info.kind == "plaintext" and info.can_store and not info.secure
    assert "UNENCRYPTED" in info.message and info.location is not None
    assert Path(info.location).is_relative_to(isolated_home)  # the test's own XDG_DATA_HOME
    assert cr.save_secret(cr.key_for("pypi"), TOKEN).kind == "plaintext"
    assert cr.get_secret(cr.key_for("pypi")) == TOKEN


def test_system_keychains_are_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyring.backends import SecretService

    use_keyring_backend(monkeypatch, SecretService.Keyring())  # only its type is looked at
    info = cr.backend_info()
    assert info.kind == "keychain" and info.secure and "Secret Service" in info.message
    use_keyring_backend(monkeypatch, null.Keyring())
    assert cr.backend_info().kind == "none"


def test_keys_follow_twine() -> None:
    key = cr.key_for("pypi")
    assert (key.service, key.username, key.secret_label) == ("https://upload.pypi.org/legacy/", "__token__",
                                                             "API token")
    assert cr.key_for("testpypi").service == "https://test.pypi.org/legacy/"
    private = cr.key_for("pypi", "https://pypi.example.com/legacy/", "alice")
    assert (private.service, private.username, private.secret_label) == (
        "https://pypi.example.com/legacy/", "alice", "password")
    with pytest.raises(cr.CredentialsError, match="'github' is not a place"):
        cr.key_for("github")
    with pytest.raises(cr.CredentialsError, match="is not a web address"):
        cr.key_for("pypi", "pypi.example.com")
    with pytest.raises(cr.CredentialsError, match="must not hold a username or password") as err:
        cr.key_for("pypi", "https://alice:hunter2@pypi.example.com/")
    assert "hunter2" not in str(err.value)


def test_save_read_delete_and_twine_finds_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from twine.auth import CredentialInput, Resolver

    store = use_memory_keyring(monkeypatch)
    key = cr.key_for("pypi")
    assert not cr.has_secret(key)
    info = cr.save_secret(key, f"  {TOKEN}\n")  # pasted with spaces and a newline
    assert info.kind == "other" and not info.secure and "cannot tell" in info.message
    assert store.secrets == {("https://upload.pypi.org/legacy/", "__token__"): TOKEN}
    resolver = Resolver({"repository": cr.PYPI_UPLOAD_URL, "username": None, "password": None}, CredentialInput())
    assert (resolver.username, resolver.password) == ("__token__", TOKEN)  # `twine upload` would use it as is
    assert cr.require_secret(key) == TOKEN
    assert cr.delete_secret(key) and not cr.delete_secret(key)
    with pytest.raises(cr.MissingCredentials, match="workbench credentials set pypi") as missing:
        cr.require_secret(key)
    assert TOKEN not in str(missing.value)
    with pytest.raises(cr.CredentialsError, match="empty"):
        cr.save_secret(key, "   ")
    private = cr.key_for("pypi", "http://127.0.0.1:9/", "alice")
    with pytest.raises(cr.MissingCredentials, match="--url http://127.0.0.1:9/ --username alice"):
        cr.require_secret(private)


def _env(home: Path) -> dict[str, str]:
    return {"PYTHON_KEYRING_BACKEND": PLAINTEXT, "XDG_DATA_HOME": str(home / ".local/share")}


def test_cli_reads_the_secret_from_stdin_and_never_prints_it(isolated_home: Path) -> None:
    env = _env(isolated_home)
    saved = run_cli("credentials", "set", "pypi", input=TOKEN + "\n", extra_env=env)
    assert saved.returncode == 0, saved.stderr
    assert "Saved the API token for __token__ at https://upload.pypi.org/legacy/." in saved.stdout
    assert "UNENCRYPTED" in saved.stderr  # the plaintext backend is called what it is
    status = run_cli("credentials", "status", "--json", extra_env=env)
    data = json.loads(status.stdout)
    assert data["backend"]["kind"] == "plaintext"
    assert {(s["target"], s["saved"]) for s in data["secrets"]} == {("pypi", True), ("testpypi", False)}
    text = run_cli("credentials", "status", "pypi", extra_env=env)
    assert "API token saved" in text.stdout and text.stdout.startswith("Warning:")
    for result in (saved, status, text):
        assert TOKEN not in result.stdout + result.stderr
    keyring_file = isolated_home / ".local/share/python_keyring/keyring_pass.cfg"
    assert keyring_file.exists()  # where this (plaintext) backend keeps it, as the warning said
    deleted = run_cli("credentials", "delete", "pypi", extra_env=env)
    assert deleted.returncode == 0 and "Deleted" in deleted.stdout
    again = run_cli("credentials", "delete", "pypi", extra_env=env)
    assert "Nothing was saved" in again.stdout


def test_cli_refuses_an_empty_secret_and_has_no_argument_for_one(isolated_home: Path) -> None:
    env = _env(isolated_home)
    empty = run_cli("credentials", "set", "testpypi", input="", extra_env=env)
    assert empty.returncode == 1 and "nothing was saved" in empty.stderr and "Traceback" not in empty.stderr
    on_argv = run_cli("credentials", "set", "pypi", "--token", TOKEN, extra_env=env)
    assert on_argv.returncode == 2 and "unrecognized arguments" in on_argv.stderr
    switched_off = run_cli("credentials", "set", "pypi", input=TOKEN)  # the suite's default: null backend
    assert switched_off.returncode == 1 and "switched off" in switched_off.stderr
