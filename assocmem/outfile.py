"""Write one output file whole or not at all, and only where a regular file (or nothing) stands."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from assocmem.errors import InputError

KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_target(path: Path, what: str, keep=()) -> None:
    """Refuse anything but a new or a regular file at `path`, and a folder that does not exist: the rename would
    put the file where a device node, a FIFO, a folder or a symbolic link stood (a link would be replaced itself,
    not the file it points to).  `what` names the file in the message ("an HTML report"); `keep`: files it must
    not replace (the scenario it was made from: `run s.yaml --html s.yaml`)."""
    path = Path(path)
    for other in keep:
        if os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other):
            raise InputError(f"is an input file (the scenario or its graph); it would be replaced by {what}", path,
                             hint="choose another file name")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:  # a name too long, a path through a file (ENOTDIR), a loop of links above it
        raise InputError(f"cannot write {what} there: {err.strerror}", path) from None
    if st is not None:
        for test, kind in KINDS:
            if test(st.st_mode):
                raise InputError(f"is {kind}; only a regular file is replaced by {what}", path,
                                 hint="choose another file name")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is not a regular file; only a regular file is replaced by {what}", path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {what}: the folder {folder} does not exist", path,
                         hint="create it first, or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what}: the folder {folder} is not writable", path,
                         hint="choose a folder you can write to")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_with(path: Path | str, what: str, write) -> Path:
    """write(file) into `path` through a temporary file in the same folder and a rename, so a reader never sees half
    a file; the file gets the mode a new file would (0666 less the umask; mkstemp's is 0600); the temporary is
    removed on any exception, and on SIGTERM, which cli.main turns into SystemExit."""
    path = Path(path)
    check_target(path, what)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=path.suffix + ".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        check_target(path, what)  # again: something may have been put there while writing
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_whole(path: Path | str, data: bytes, what: str) -> Path:
    """`data` into `path`, whole or not at all (write_with)."""
    return write_with(path, what, lambda f: f.write(data))
