"""List what a pickle would import, without running it.

Loading a pickle calls whatever ``module.name`` globals it references; listing those globals (by
walking the opcodes with :mod:`pickletools`, never executing them) tells us whether a file is plain
weights or would run someone's code.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass

# Globals that ``torch.save`` of tensors, state_dicts and plain training checkpoints produces.
# Loading these through torch's weights-only unpickler is safe.
_SAFE_EXACT = {
    "collections.OrderedDict", "collections.defaultdict", "builtins.set", "builtins.frozenset",
    "builtins.slice", "builtins.complex", "builtins.bytearray", "builtins.range", "_codecs.encode",
    "__builtin__.set", "__builtin__.frozenset", "__builtin__.slice", "__builtin__.complex",
    "__builtin__.bytearray",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_wrapper_subclass", "torch._tensor._rebuild_from_type_v2",
    "torch.serialization._get_layout", "torch.device", "torch.Size", "torch.Tensor",
    "torch.nn.parameter.Parameter", "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
    "torch.per_tensor_affine", "torch.per_channel_affine", "torch.per_tensor_symmetric",
    "torch.per_channel_symmetric", "torch.strided", "torch.sparse_coo", "torch._utils._rebuild_nested_tensor",
}
_SAFE_TORCH_SUFFIXES = ("Storage",)  # torch.FloatStorage, torch.BFloat16Storage, ...
_TORCH_DTYPES = {
    "float", "double", "half", "bfloat16", "float16", "float32", "float64", "int8", "int16", "int32",
    "int64", "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "long", "int",
    "short", "qint8", "quint8", "qint32", "float8_e4m3fn", "float8_e5m2",
}

# Globals that run commands or arbitrary code. A file that references one is refused even when the
# user says they trust it: no model needs them.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "pty", "commands", "webbrowser",
    "runpy", "importlib", "ctypes", "multiprocessing", "code", "codeop", "pdb", "asyncio", "http",
    "urllib", "requests", "marshal", "types", "platform", "signal", "tempfile", "pickle", "_pickle",
    "dill", "cloudpickle", "torch.hub", "torch.jit", "torch._C", "torch.utils.cpp_extension",
    "numpy.f2py", "numpy.testing", "pip", "setuptools",
}
_DANGEROUS_EXACT = {
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.__import__",
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals", "builtins.locals",
    "builtins.vars", "builtins.breakpoint", "builtins.input", "builtins.help", "builtins.apply",
    "__builtin__.eval", "__builtin__.exec", "__builtin__.getattr", "__builtin__.open",
    "__builtin__.__import__", "operator.attrgetter", "operator.methodcaller", "functools.partial",
    "torch.load", "torch.save", "numpy.load",
}


class PickleParseError(ValueError):
    """The bytes are not a complete, valid pickle."""


@dataclass(frozen=True)
class PickleScan:
    """The globals one or more pickles reference, classified."""

    imports: tuple[str, ...]

    @property
    def unsafe(self) -> tuple[str, ...]:
        """Globals outside the plain-weights set (loading would import and call them)."""
        return tuple(g for g in self.imports if not is_weights_global(g))

    @property
    def dangerous(self) -> tuple[str, ...]:
        """Globals that run commands or code."""
        return tuple(g for g in self.imports if is_dangerous_global(g))


def is_weights_global(name: str) -> bool:
    if name in _SAFE_EXACT:
        return True
    module, _, attr = name.rpartition(".")
    return module == "torch" and (attr.endswith(_SAFE_TORCH_SUFFIXES) or attr in _TORCH_DTYPES)


def is_dangerous_global(name: str) -> bool:
    if name in _DANGEROUS_EXACT or name.startswith("<"):
        return True
    module = name.rpartition(".")[0]
    return any(module == m or module.startswith(m + ".") for m in _DANGEROUS_MODULES)


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
               "STRING"}
_MEMO_PUT = {"BINPUT", "LONG_BINPUT", "PUT"}
_MEMO_GET = {"BINGET", "LONG_BINGET", "GET"}


def scan_pickle_bytes(data: bytes, *, several: bool = False) -> PickleScan:
    """Globals referenced by the pickle in ``data`` (or by consecutive pickles, as in legacy torch files).

    Raises PickleParseError when the first pickle is malformed or truncated.
    """
    stream = io.BytesIO(data)
    found: list[str] = []
    first = True
    while stream.tell() < len(data):
        try:
            found.extend(_scan_one(stream))
        except PickleParseError:
            if first:
                raise
            break  # legacy torch files put raw tensor bytes after the pickles
        first = False
        if not several:
            break
    return PickleScan(tuple(dict.fromkeys(found)))


def _scan_one(stream: io.BytesIO) -> list[str]:
    found: list[str] = []
    memo: dict[int, object] = {}
    pushed: list[object] = []  # recent values, enough to resolve STACK_GLOBAL
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            name = opcode.name
            if name in _STRING_OPS:
                pushed.append(arg if isinstance(arg, str) else
                              arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
            elif name in _MEMO_PUT:
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in _MEMO_GET:
                pushed.append(memo.get(int(arg)))
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append(f"{module}.{attr}")
                pushed.append(None)
            elif name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-1], str) and isinstance(pushed[-2], str):
                    found.append(f"{pushed[-2]}.{pushed[-1]}")
                else:
                    found.append("<a name computed at load time>")
                pushed.append(None)
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"<copyreg extension {arg}>")
                pushed.append(None)
            elif name != "PROTO" and name != "FRAME":
                pushed.append(None)
            if len(pushed) > 64:
                del pushed[:32]
    except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise PickleParseError(str(exc) or type(exc).__name__) from None
    return found
