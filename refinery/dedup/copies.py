"""Copying keepers out (`refinery dedup --copy-keepers-to`): each file checked to be what was
judged, copied to a new file under a random name, compared, and only then given its name
(refinery/dedup/actions.py says what is checked, and why)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from refinery.dedup.checks import Planned, Reach, open_source
from refinery.dedup.transfer import ActionResult, Folders, copy_new, reason
from refinery.errors import DeviceFull, Unreachable, UnsafePath
from refinery.io.fileio import DEVICE_ERRORS, is_regular, link_as_new

log = logging.getLogger(__name__)


def copy_out(
    root: Path,
    plan: list[Planned],
    dest: Path,
    *,
    follow_symlinks: bool = False,
    advance: Callable[[int], None] = lambda n: None,
    stop: threading.Event | None = None,
) -> ActionResult:
    """Copy root/REL to dest/REL for each planned file that is still what was judged (never
    over an existing file; the bytes copied are the bytes judged), each reached as the run
    that judged it did (through symbolic links only with `follow_symlinks`). Stops between
    two files when `stop` is set; raises DeviceFull when DEST cannot take more."""
    root, dest = Path(root), Path(dest)
    result = ActionResult()
    dest.mkdir(parents=True, exist_ok=True)
    reach = Reach(root, follow_symlinks)
    with Folders(dest) as folders:
        for item in plan:
            if stop is not None and stop.is_set():
                break
            why = _copy_one(reach, item, folders)
            if why:
                log.error("%s: not copied: %s", root / item.rel, why)
                result.failed += 1
            else:
                result.done += 1
            advance(1)
    return result


def _copy_one(reach: Reach, item: Planned, folders: Folders) -> str:
    """Copy one file; '' if it was copied, else why not."""
    try:
        folder = reach.parent(item.rel)
    except (Unreachable, OSError) as e:
        return reason(e)
    try:
        reach.file(folder, item.rel)
        fd_in, why = open_source(item.rel.rpartition("/")[2], folder)
    except FileNotFoundError:
        fd_in, why = None, "is gone"
    except (Unreachable, OSError) as e:
        return reason(e)
    finally:
        os.close(folder)
    if fd_in is None:
        return f"it {why}"
    try:
        st = os.fstat(fd_in)
        if not is_regular(st) or (st.st_size, st.st_mtime_ns) != (item.judged.size, item.judged.mtime_ns):
            return "it changed since it was judged (size or modification time)"
        parts = item.rel.split("/")
        folder = folders.get(parts[:-1])
        tmp, digest = copy_new(fd_in, st, folder, parts[-1])
        try:
            if digest != item.judged.sha256:
                return "it changed since it was judged (its bytes)"
            link_as_new(folder, tmp, parts[-1])
            return ""
        finally:
            os.unlink(tmp, dir_fd=folder)
    except (OSError, UnsafePath) as e:
        if isinstance(e, OSError) and e.errno in DEVICE_ERRORS:
            raise DeviceFull(f"{folders.dest}: {e.strerror}; stopped copying (nothing half-written is left)") from None
        return reason(e)
    finally:
        os.close(fd_in)
