"""``atomic_write``: the one way Tether replaces a file it reads back (CNI results, a pod's
hostname and resolv.conf, a container's config.json, small image blobs).

It lives in ``cni/``, the lowest package of the import table, for the reason
``cni/errdefs.py`` does: ``cni``, ``podsandbox`` and ``shim`` may all import it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

# Temp files start with this: directory scans that must skip half-written files (the CNI
# result cache, the blob store's stray-file sweep) know them by it.
TMP_PREFIX = ".tmp-"


def atomic_write(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` at once: a reader, or the file after a crash, sees the
    old content or the new, never a part of it. The temp file is made in the same directory
    (a rename does not cross filesystems) and fsynced before the rename (without it, a crash
    soon after may leave an empty file under the new name). ``mode`` is set exactly,
    whatever the umask. The temp file is removed on failure."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
