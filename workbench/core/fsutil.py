"""Writing model files safely, and measuring them.

Outputs are written into a private folder beside the destination (same disk, so the final move is atomic)
and moved into place side files first, the model file last: a reader never finds a model file without
its external data. Input files are only ever read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import AccessDenied, FileProblem, WorkbenchError
from .jobs import Job

GZIP_LEVEL = 6


def check_output(source: Path, out_path: Path) -> None:
    """Refuse an output path that is the input file itself, or a folder."""
    if same_file(source, out_path):
        raise WorkbenchError(f"The output {out_path.name} is the input file itself; input files are never changed.",
                             hint="Choose another output name.", path=out_path)
    if out_path.is_dir():
        raise FileProblem(f"The output {out_path} is a folder.", hint="Give a file name ending in .onnx.",
                          path=out_path)


def same_file(a: Path, b: Path) -> bool:
    """Whether both paths exist and are the same file."""
    return a.exists() and b.exists() and a.resolve() == b.resolve()


@contextmanager
def work_folder(out_path: Path) -> Iterator[Path]:
    """A private folder beside ``out_path``, removed afterwards with whatever is left in it."""
    work = _new_folder(out_path)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def move_into_place(files: Sequence[Path], out_path: Path) -> list[Path]:
    """Move a model file and its side files (``files``, the model first) beside ``out_path``; the final paths.

    The model file is renamed to ``out_path`` and moved last; side files keep their names (the model refers
    to them by name) and get the model file's permissions (onnx writes external data owner-only).
    """
    final = [out_path, *(out_path.parent / f.name for f in files[1:])]
    mode = files[0].stat().st_mode & 0o777
    for src, dst in [*zip(files[1:], final[1:]), (files[0], out_path)]:
        os.chmod(src, mode)
        os.replace(src, dst)
    return final


class StagedOutput:
    """Write a model (and its external data) into a private folder beside ``out_path``, then move it in place.

    ``with StagedOutput(out) as staged:`` gives the path to write the model to, inside a temporary folder
    in the destination folder, so side files get their final names. Only when the block ends without an
    error are the files moved next to ``out_path`` (side files first, the model last); the folder is
    removed either way. ``files`` then lists the final paths, the model first.
    """

    def __init__(self, out_path: Path) -> None:
        self.out_path = Path(out_path)
        self.files: list[Path] = []
        self._dir: Path | None = None

    def __enter__(self) -> Path:
        self._dir = _new_folder(self.out_path)
        return self._dir / self.out_path.name

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        assert self._dir is not None
        try:
            if exc_type is None:
                model = self._dir / self.out_path.name
                side = sorted(p for p in self._dir.iterdir() if p != model)
                self.files = move_into_place([model, *side], self.out_path)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def total_size(paths: Sequence[Path]) -> int:
    """Bytes the files take on disk together."""
    return sum(p.stat().st_size for p in paths)


def gzip_size(paths: list[Path], job: Job | None = None) -> int:
    """Bytes the files take once gzip-compressed together (deflate level 6), reading 1 MB at a time."""
    job = job or Job()
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    total = sum(p.stat().st_size for p in paths) or 1
    done = size = 0
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                job.progress(done, total, f"Compressing {path.name}")
                size += len(gz.compress(chunk))
                done += len(chunk)
    return size + len(gz.flush())


def _new_folder(out_path: Path) -> Path:
    """A new hidden folder in ``out_path``'s folder (made if missing), named after the output."""
    folder = out_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=folder))
    except PermissionError:
        raise AccessDenied(f"Cannot write in {folder}: permission denied.",
                           hint="Choose a folder you can write to.", path=folder) from None
    except OSError as exc:
        raise FileProblem(f"Cannot write in {folder}: {exc.strerror or exc}.",
                          hint="Choose a folder you can write to.", path=folder) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
