"""`workbench credentials set|delete|status TARGET`: tokens and passwords for publishing, kept in the keychain.

The secret is read from a hidden prompt, or from standard input when that is not a terminal (for scripts:
``printf %s "$TOKEN" | workbench credentials set pypi``); never from the command line, where other users
and the shell history could see it.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..core.credentials import TARGETS

    p = sub.add_parser("credentials", help="save, delete or check publishing tokens in the system keychain",
                       description="Tokens and passwords for publishing live in the system keychain (through the "
                                   "keyring library), stored under the upload address, where twine finds them too.")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("set", "save a token or password (asked for, or read from standard input)"),
                         ("delete", "remove a saved token or password"),
                         ("status", "say where secrets are kept and whether one is saved")):
        a = actions.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument("target", choices=sorted(TARGETS), nargs="?" if action == "status" else None,
                       help="where you publish to")
        a.add_argument("--url", help="the upload address of a private index (default: the target's own)")
        a.add_argument("--username", help="for a private index (default: __token__, as PyPI tokens use)")
        a.add_argument("--json", action="store_true", help="print JSON instead of text")
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core import credentials as cr

    info = cr.backend_info()
    if args.action == "status":
        keys = [cr.key_for(args.target, args.url, args.username)] if args.target else [
            cr.key_for(name) for name in sorted(cr.TARGETS)]
        saved = {k.service + " " + k.username: cr.has_secret(k) for k in keys}
        if args.json:
            print_json({"backend": info.to_dict(), "secrets": [
                {"target": k.target, "url": k.service, "username": k.username,
                 "saved": saved[k.service + " " + k.username]} for k in keys]})
            return 0
        print(_backend_text(info))
        for k in keys:
            state = "saved" if saved[k.service + " " + k.username] else "not saved"
            print(f"  {k.target:<9} {k.service}  {k.username}: {k.secret_label} {state}")
        return 0
    key = cr.key_for(args.target, args.url, args.username)
    if args.action == "delete":
        removed = cr.delete_secret(key)
        if args.json:
            print_json({"deleted": removed, "url": key.service, "username": key.username})
        else:
            print(f"Deleted {key.describe()}." if removed else f"Nothing was saved as {key.describe()}.")
        return 0
    secret = _read_secret(key)
    info = cr.save_secret(key, secret)
    if args.json:
        print_json({"saved": True, "url": key.service, "username": key.username, "backend": info.to_dict()})
    else:
        print(f"Saved {key.describe()}.")
        if not info.secure:
            print(f"workbench: warning: {info.message}" + (f" {info.hint}" if info.hint else ""), file=sys.stderr)
    return 0


def _read_secret(key: object) -> str:
    from ..core.credentials import CredentialKey, CredentialsError

    assert isinstance(key, CredentialKey)
    if sys.stdin is not None and sys.stdin.isatty():
        secret = getpass.getpass(f"{key.secret_label[0].upper() + key.secret_label[1:]} for {key.username} at "
                                 f"{key.service} (not shown): ")
    else:
        secret = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not secret.strip():
        raise CredentialsError(f"No {key.secret_label} was given; nothing was saved.",
                               hint="Type it at the prompt, or pipe it in: printf %s \"$TOKEN\" | workbench "
                                    "credentials set " + key.target)
    return secret


def _backend_text(info: object) -> str:
    from ..core.credentials import BackendInfo

    assert isinstance(info, BackendInfo)
    text = info.message + (f" {info.hint}" if info.hint else "")
    return text if info.secure else "Warning: " + text
