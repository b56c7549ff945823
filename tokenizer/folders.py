"""Writing a tokenizer folder all at once: built in a hidden sibling, then moved into place.

A tokenizer folder is several files that only work together (the Unigram model, the compiled
user dictionary, its term list, the settings). Written in place, a failure halfway leaves a
folder that still loads but encodes differently. So every writer under tokenizer/ builds the
whole folder in `<parent>/.tmp-<name>-<pid>` (the same parent, so the final rename is atomic)
and moves it into place only once every file is written; on any failure the temporary folder is
removed and the destination is exactly as it was.

An existing folder is replaced only when the caller allows it, and only once the new one is
complete: the old one is renamed to `<parent>/.old-<name>-<pid>`, the new one renamed into
place, then the old one deleted. Leftovers of a killed run (whose process is gone) are cleaned
up by the next write to the same destination; an `.old-` folder whose destination is missing
(a run killed between the two renames) is the previous folder, complete, and is put back.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Collection
from pathlib import Path

TMP_PREFIX, OLD_PREFIX = ".tmp-", ".old-"


class FolderExistsError(FileExistsError):
    """The destination holds something that may not be replaced; the message names it and the way out."""

    def __init__(self, message: str, path: str | Path):
        super().__init__(message)
        self.path = str(path)

    def __str__(self) -> str:
        return self.args[0]


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, harmless liveness check: never clean up another process's folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(dest: Path, prefix: str) -> list[tuple[Path, int]]:
    """(folder, pid) of `<parent>/<prefix><name>-<pid>` next to `dest`."""
    head = f"{prefix}{dest.name}-"
    found = []
    for path in dest.parent.glob(glob.escape(head) + "*"):
        pid = path.name[len(head):]
        if pid.isdigit() and path.is_dir() and not path.is_symlink():
            found.append((path, int(pid)))
    return found


def clean_stale(dest: str | Path) -> list[str]:
    """Remove what killed writes to `dest` left behind (a temporary folder, or an old folder moved
    aside, put back if `dest` is missing); returns what was done, one line each."""
    dest = Path(dest)
    done = []
    for path, pid in _leftovers(dest, TMP_PREFIX):
        if pid == os.getpid() or not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}, left by an interrupted run")
    for path, pid in _leftovers(dest, OLD_PREFIX):
        if pid == os.getpid() or not _alive(pid):
            if not dest.exists():
                os.rename(path, dest)
                done.append(f"restored {dest} from {path}, moved aside by an interrupted run")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path}, left by an interrupted run")
    return done


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def _shown(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


class StagedFolder:
    """`with StagedFolder(dest, ...) as tmp:` write every file into `tmp`; on leaving the block the
    folder becomes `dest` (or, on an exception, is removed and `dest` left as it was).

    replace: an existing non-empty `dest` may be replaced; without it, one is a FolderExistsError
      (raised here, before any work, and checked again before the move).
    owned: the file names a replaceable folder may hold (a tokenizer's files); a folder holding
      anything else is never replaced. None: the folder is someone else's too (a transformers
      tokenizer saved into a model folder), so the new files are moved in one by one, each
      complete, and nothing else in it is touched.
    option: what lets a caller replace, for the message ("--overwrite (overwrite=True)").
    After the block, `replaced` says whether an existing folder was replaced.
    """

    def __init__(self, dest: str | Path, *, replace: bool, owned: Collection[str] | None,
                 what: str = "a tokenizer", option: str = "--overwrite (overwrite=True)"):
        dest = Path(dest)
        if dest.is_symlink():
            dest = dest.resolve()
        self.dest, self.replace, self.owned, self.what, self.option = dest.absolute(), replace, owned, what, option
        self.path = self.dest.parent / f"{TMP_PREFIX}{self.dest.name}-{os.getpid()}"
        self.replaced = False
        self.cleaned = clean_stale(self.dest) if self.dest.parent.is_dir() else []  # before the check: it may restore `dest`
        self.check()

    def check(self) -> bool:
        """Whether `dest` holds a folder that will be replaced; FolderExistsError if it may not be."""
        dest = self.dest
        if dest.exists() and not dest.is_dir():
            raise FolderExistsError(f"{dest} is a file, not a folder: choose a folder to write {self.what} to", dest)
        names = _entries(dest)
        if not names:
            return False
        if self.owned is not None:
            foreign = [n for n in names if n not in self.owned]
            if foreign:
                raise FolderExistsError(
                    f"{dest} is not empty and holds files that do not belong to {self.what} ({_shown(foreign)}): "
                    f"choose a new or empty folder", dest)
        if not self.replace:
            raise FolderExistsError(
                f"{dest} already holds {self.what} ({_shown(names)}): pass {self.option} to replace it "
                f"once the new one is complete, or choose another folder", dest)
        return True

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # this process's own, from a write that failed without cleaning up
            shutil.rmtree(self.path)
        self.path.mkdir()
        return self.path

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            self._publish()
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        return False

    def _publish(self) -> None:
        replacing = self.check()  # again: something may have appeared while the files were written
        _sync(self.path)
        dest = self.dest
        if not replacing:
            if dest.is_dir():
                dest.rmdir()  # empty; a rename onto it works on POSIX only
            os.rename(self.path, dest)
        elif self.owned is None:
            for p in sorted(self.path.iterdir()):
                target = dest / p.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(p, target)
            self.path.rmdir()
            self.replaced = True
        else:
            old = dest.parent / f"{OLD_PREFIX}{dest.name}-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.rename(dest, old)
            try:
                os.rename(self.path, dest)
            except BaseException:
                os.rename(old, dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
            self.replaced = True
        _sync_dir(dest.parent)


def _sync(folder: Path) -> None:
    """Flush the files (then the folder) to disk, so the rename never exposes unwritten data."""
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible everywhere (Windows); the rename is atomic either way
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
