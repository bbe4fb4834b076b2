"""Secrets (API tokens, passwords) for the places models are published to: kept by ``keyring`` and nowhere else.

A secret is stored under a *service* (the upload address) and a *username*, the way ``twine`` and other tools
look them up, so a token saved here also works for ``twine upload`` on the command line: a PyPI token lives
under ``https://upload.pypi.org/legacy/`` and ``__token__``. Private indexes use their own address and a real
username. :func:`backend_info` says plainly where secrets end up, and warns when that is not a real keychain
(an unencrypted file, or nothing at all). Secrets never appear in messages, results or logs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import WorkbenchError

PYPI_UPLOAD_URL = "https://upload.pypi.org/legacy/"
TESTPYPI_UPLOAD_URL = "https://test.pypi.org/legacy/"
TOKEN_USERNAME = "__token__"

# keyring's own backends that hand secrets to the operating system's keychain
_SYSTEM_KEYCHAINS = {
    "keyring.backends.SecretService": "the Secret Service keychain (GNOME Keyring or KWallet)",
    "keyring.backends.libsecret": "the Secret Service keychain (libsecret)",
    "keyring.backends.kwallet": "KWallet",
    "keyring.backends.macOS": "the macOS Keychain",
    "keyring.backends.Windows": "the Windows Credential Manager",
}


class CredentialsError(WorkbenchError):
    """A secret could not be saved, read or deleted."""


class NoKeychain(CredentialsError):
    """There is nowhere to keep secrets on this computer (or saving them is switched off)."""


class MissingCredentials(CredentialsError, LookupError):
    """No secret is saved for the address and username a task needs."""


@dataclass(frozen=True)
class Target:
    """A kind of place to publish to, and how its secrets are keyed by default."""

    name: str  # as typed on the command line: "pypi"
    label: str  # for people: "PyPI"
    default_url: str
    default_username: str | None  # None: the user must give one
    secret_label: str  # "API token", "password"


TARGETS: dict[str, Target] = {
    "pypi": Target("pypi", "PyPI", PYPI_UPLOAD_URL, TOKEN_USERNAME, "API token"),
    "testpypi": Target("testpypi", "TestPyPI", TESTPYPI_UPLOAD_URL, TOKEN_USERNAME, "API token"),
}


@dataclass(frozen=True)
class CredentialKey:
    """Where one secret is kept: ``service`` (an address) and ``username``."""

    target: str
    service: str
    username: str
    secret_label: str  # what to call the secret when asking for it

    def describe(self) -> str:
        return f"the {self.secret_label} for {self.username} at {self.service}"


@dataclass(frozen=True)
class BackendInfo:
    """Where ``keyring`` keeps secrets on this computer, in plain words."""

    name: str  # the backend class, e.g. "keyrings.alt.file.PlaintextKeyring"
    kind: str  # "keychain", "plaintext", "none" or "other"
    secure: bool  # a real keychain that encrypts at rest
    can_store: bool
    location: str | None  # the file, for file backends
    message: str  # one plain sentence for the user
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_for(target: str, url: str | None = None, username: str | None = None) -> CredentialKey:
    """The key of ``target``'s secret at ``url`` (default: the target's address) for ``username``."""
    spec = TARGETS.get(target)
    if spec is None:
        raise CredentialsError(f"'{target}' is not a place Model Workbench publishes to.",
                               hint=f"Use one of: {', '.join(TARGETS)}.")
    service = (url or spec.default_url).strip()
    parts = urlsplit(service)
    if parts.username or parts.password:
        raise CredentialsError("The address must not hold a username or password.",
                               hint="Give the address alone, and the username with --username.")
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise CredentialsError(f"The address '{service}' is not a web address.",
                               hint="Give the full upload address, e.g. https://upload.pypi.org/legacy/.")
    user = (username or spec.default_username or "").strip()
    if not user:
        raise CredentialsError(f"{spec.label} at {service} needs a username.", hint="Give it with --username.")
    label = spec.secret_label if user == spec.default_username else "password"
    return CredentialKey(spec.name, service, user, label)


def backend_info() -> BackendInfo:
    """Describe the active keyring backend and whether it really protects secrets."""
    import keyring

    backend = keyring.get_keyring()
    chosen = _first_backend(backend)
    if chosen is None:
        return _no_keychain("keyring.backends.chainer.ChainerBackend")
    cls = type(chosen)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "keyring.backends.fail":
        return _no_keychain(name)
    if cls.__module__ == "keyring.backends.null":
        return BackendInfo(name, "none", False, False, None,
                           "Saving secrets is switched off here (keyring's 'null' backend is selected).",
                           "Unset PYTHON_KEYRING_BACKEND, or change keyring's configuration, to use a keychain.")
    if cls.__module__ in _SYSTEM_KEYCHAINS:
        return BackendInfo(name, "keychain", True, True, None,
                           f"Secrets are kept in {_SYSTEM_KEYCHAINS[cls.__module__]}.")
    location = getattr(chosen, "file_path", None)
    if cls.__module__.startswith("keyrings.alt.file") and cls.__name__ == "PlaintextKeyring":
        return BackendInfo(name, "plaintext", False, True, str(location),
                           f"This computer has no keychain, so secrets are stored UNENCRYPTED in the file "
                           f"{location}: anyone who can read that file can use them.",
                           "Install and unlock a keychain (GNOME Keyring or KWallet on Linux) to protect them.")
    return BackendInfo(name, "other", False, True, str(location) if location else None,
                       f"Secrets are kept by the keyring backend {name}; Model Workbench cannot tell whether it "
                       f"encrypts them.")


def save_secret(key: CredentialKey, secret: str) -> BackendInfo:
    """Store ``secret`` under ``key``; returns where it went (check ``secure`` and warn the user)."""
    import keyring
    from keyring.errors import KeyringError

    if not secret or not secret.strip():
        raise CredentialsError(f"The {key.secret_label} is empty; nothing was saved.")
    info = backend_info()
    if not info.can_store:
        raise NoKeychain(f"Cannot save {key.describe()}: {_lower_first(info.message)}", hint=info.hint)
    try:
        keyring.set_password(key.service, key.username, secret.strip())
        kept = keyring.get_password(key.service, key.username) == secret.strip()
    except KeyringError as exc:
        raise CredentialsError(f"The keychain refused to save {key.describe()} ({type(exc).__name__}).",
                               hint="Unlock the keychain and try again.") from None
    if not kept:
        raise NoKeychain(f"The keyring backend {info.name} did not keep {key.describe()}.", hint=info.hint)
    return info


def get_secret(key: CredentialKey) -> str | None:
    """The secret saved under ``key``, or None when there is none (or no keychain)."""
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        return keyring.get_password(key.service, key.username)
    except NoKeyringError:
        return None
    except KeyringError as exc:
        raise CredentialsError(f"The keychain refused to read {key.describe()} ({type(exc).__name__}).",
                               hint="Unlock the keychain and try again.") from None


def require_secret(key: CredentialKey) -> str:
    """The secret saved under ``key``; raises :class:`MissingCredentials` saying how to save one."""
    secret = get_secret(key)
    if secret:
        return secret
    url = "" if key.service == TARGETS[key.target].default_url else f" --url {key.service}"
    user = "" if key.username == TARGETS[key.target].default_username else f" --username {key.username}"
    info = backend_info()
    extra = "" if info.can_store else f" ({info.message})"
    raise MissingCredentials(f"No {key.secret_label} is saved for {key.username} at {key.service}{extra}.",
                             hint=f"Save it with `workbench credentials set {key.target}{url}{user}` or the "
                                  f"'Save token…' button on the Publish page.")


def delete_secret(key: CredentialKey) -> bool:
    """Remove the secret under ``key``; False when there was none."""
    import keyring
    from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

    if get_secret(key) is None:
        return False
    try:
        keyring.delete_password(key.service, key.username)
    except PasswordDeleteError:
        return False
    except (NoKeyringError, KeyringError) as exc:
        raise CredentialsError(f"The keychain refused to delete {key.describe()} ({type(exc).__name__}).",
                               hint="Unlock the keychain and try again.") from None
    return True


def has_secret(key: CredentialKey) -> bool:
    return bool(get_secret(key))


def _first_backend(backend: Any) -> Any | None:
    """The backend that actually stores secrets (the first one of a chain), or None for an empty chain."""
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        return backend.backends[0] if backend.backends else None
    return backend


def _no_keychain(name: str) -> BackendInfo:
    return BackendInfo(name, "none", False, False, None, "No keychain is available on this computer.",
                       "Install and unlock a keychain (GNOME Keyring or KWallet on Linux); on a server without "
                       "one, `pip install keyrings.alt` keeps secrets in a plain, unencrypted file.")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
