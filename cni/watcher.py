"""The default network, reloaded when the config dir or the plugin dirs change.

Checking is cheap and rate-limited (at most once per ``interval``): a fingerprint of the conf dir
(its mtime plus name, mtime, size and inode of each config file) and the mtimes of the plugin
dirs, so a plugin binary installed after its config (a common DaemonSet order) is noticed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from cni.config import LoadResult, conf_files, load_default_network

log = structlog.get_logger(component="cni")

Fingerprint = tuple[object, ...]


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def fingerprint(conf_dir: str, plugin_dirs: Sequence[str]) -> Fingerprint:
    files = tuple((p, _stat_key(p)) for p in conf_files(conf_dir))
    dirs = tuple(_stat_key(d) for d in (conf_dir, *plugin_dirs))
    return files, dirs


class ConfWatcher:
    def __init__(self, conf_dir: str, plugin_dirs: Sequence[str], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conf_dir = conf_dir
        self.plugin_dirs = tuple(plugin_dirs)
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._fingerprint: Fingerprint | None = None
        self._loaded = LoadResult(None)

    def current(self) -> LoadResult:
        with self._lock:
            now = self._clock()
            if self._checked_at is not None and now - self._checked_at < self.interval:
                return self._loaded
            self._checked_at = now
            fp = fingerprint(self.conf_dir, self.plugin_dirs)
            if fp != self._fingerprint:
                self._fingerprint = fp
                self._reload()
            return self._loaded

    def _reload(self) -> None:
        loaded = load_default_network(self.conf_dir, self.plugin_dirs)
        for path, reason in loaded.skipped:
            log.warning("skipping invalid CNI config", file=path, reason=reason)
        previous = self._loaded.network
        net = loaded.network
        if net is None:
            log.warning("no valid CNI network config", conf_dir=self.conf_dir)
        elif previous is None or (previous.source, previous.bytes) != (net.source, net.bytes):
            log.info("CNI network loaded", network=net.name, cni_version=net.cni_version,
                     file=net.source, plugins=[p.type for p in net.plugins])
        self._loaded = loaded
