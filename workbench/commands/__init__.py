"""The headless subcommands. Each module has ``register(subparsers)``; heavy imports stay inside ``run``."""

from __future__ import annotations

import argparse
import importlib

# command name -> module in this package (kept as names so `workbench --help` imports nothing heavy)
COMMANDS: dict[str, str] = {
    "inspect": "inspect",
    "export": "export",
    "prune": "prune",
    "quantize": "quantize",
    "compare": "compare",
    "license": "license",
    "card": "card",
    "credentials": "credentials",
    "package": "package",
    "publish": "publish",
}


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module}").register(sub)
