"""What every format reader shares: a cheap look at the file (Probe) and the Reader interface."""

from __future__ import annotations

import errno
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..document import ModelDocument
from ..errors import AccessDenied, CorruptFile, EmptyFile, FileProblem, ModelNotFound
from ..jobs import Job

HEAD_SIZE = 64


@dataclass
class Probe:
    """A cheap look at a path: its kind, size and first bytes. Built once and shared by all readers."""

    path: Path
    is_dir: bool
    size: int
    head: bytes
    _zip_names: list[str] | None = field(default=None, repr=False)

    @property
    def suffix(self) -> str:
        return "".join(self.path.suffixes[-1:]).lower()

    @property
    def is_zip(self) -> bool:
        return self.head[:4] == b"PK\x03\x04"

    @property
    def is_pickle(self) -> bool:
        # protocol 2+ pickles start with PROTO (0x80) and a protocol number
        return len(self.head) >= 2 and self.head[0] == 0x80 and 2 <= self.head[1] <= 5

    def zip_names(self) -> list[str]:
        """Member names of a ZIP archive (reads only the central directory)."""
        if self._zip_names is None:
            try:
                with zipfile.ZipFile(self.path) as zf:
                    self._zip_names = zf.namelist()
            except (zipfile.BadZipFile, EOFError, ValueError) as exc:
                raise CorruptFile(
                    f"{self.path.name} starts like a ZIP archive (as PyTorch files do) but its index "
                    f"cannot be read ({exc}).",
                    hint="The file is probably truncated or damaged; copy or export it again.",
                    path=self.path,
                ) from None
        return self._zip_names


def probe(path: str | os.PathLike[str]) -> Probe:
    """Look at a path without reading more than a few bytes. Raises a FileProblem with a clear message."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelNotFound(f"There is no file or folder at {p}.", hint="Check the path and try again.",
                            path=p) from None
    except PermissionError:
        raise AccessDenied(f"Cannot look at {p}: permission denied.",
                           hint="Check the permissions of the file and the folders above it.", path=p) from None
    except OSError as exc:
        raise FileProblem(f"Cannot look at {p}: {exc.strerror or exc}.", path=p) from None
    if p.is_dir():
        return Probe(p, True, 0, b"")
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_SIZE)
    except PermissionError:
        raise AccessDenied(f"Cannot read {p.name}: permission denied.",
                           hint="Check the file's permissions (it must be readable by you).", path=p) from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            return Probe(p, True, 0, b"")
        raise FileProblem(f"Cannot read {p.name}: {exc.strerror or exc}.", path=p) from None
    if st.st_size == 0 or not head:
        raise EmptyFile(f"{p.name} is empty (0 bytes).",
                        hint="The download or copy probably failed; get the file again.", path=p)
    return Probe(p, False, st.st_size, head)


class Reader:
    """One model format. ``match`` must be cheap; ``open`` builds the ModelDocument."""

    format: ClassVar[str]
    label: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()

    def match(self, probe: Probe) -> bool:
        """Whether the content (not the name) looks like this format."""
        raise NotImplementedError

    def open(self, probe: Probe, *, trust: bool = False, job: Job) -> ModelDocument:
        raise NotImplementedError
