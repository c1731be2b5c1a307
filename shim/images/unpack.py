"""Unpack one layer tarball into an empty directory, as an overlayfs lower layer.

Streaming (tarfile ``r|``) over a gzip, zstd (the ``zstd`` CLI) or plain stream, hashing the
uncompressed bytes so the layer's diff_id is checked on the way. Whiteouts become overlay
whiteouts: ``.wh.<name>`` a 0/0 character device, ``.wh..wh..opq`` the xattr
``trusted.overlay.opaque=y`` on its directory. Ownership, modes (setuid too), xattrs,
hardlinks, symlinks, device nodes and mtimes are kept.

Nothing can be written outside the destination: every path is relative and has no ``..``;
each parent is opened component by component with ``O_NOFOLLOW|O_DIRECTORY`` from the root's
file descriptor (so a symlink met on the way is an error, never followed); files are created
with ``O_EXCL|O_NOFOLLOW`` relative to that parent; hardlink targets are resolved the same
way. Any violation raises ``UnsafeEntry`` naming the entry. Runs in a worker thread.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from shim.images.blobs import Readable

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Never taken from a layer: they would steer overlayfs (redirects, metacopy, ...).
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(Exception):
    """The layer cannot be unpacked (corrupt stream, diff_id mismatch)."""


class UnsafeEntry(LayerError):
    """An entry would land outside the snapshot or through a symlink."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str
    size: int  # uncompressed bytes of the tar stream
    entries: int


class _HashingReader(io.RawIOBase):
    """Counts and hashes what passes (the diff_id is the sha256 of the uncompressed tar)."""

    def __init__(self, inner: io.RawIOBase) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._inner.readinto(b) or 0
        if n:
            self.hash.update(memoryview(b)[:n])
            self.count += n
        return n


class _Gunzip(io.RawIOBase):
    """gzip (several members too) over a raw byte source, read in large chunks.

    The stdlib ``gzip`` module reads its input 8 KiB at a time, which costs more than the
    inflating itself on big layers; ``zlib`` releases the GIL while it inflates.
    """

    def __init__(self, src: Readable, first: bytes) -> None:
        self._src = src
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = first
        self._done = False

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        data = self._src.read(CHUNK)
        return data if data else b""

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(b)
        while not self._done:
            if self._d.eof:
                rest = self._d.unused_data.lstrip(b"\0")  # zero padding after a member is fine
                while not rest:
                    more = self._more()
                    if not more:
                        self._done = True
                        return 0
                    rest = more.lstrip(b"\0")
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member
                self._input = rest
            data = self._d.unconsumed_tail or self._input or self._more()
            self._input = b""
            if not data:
                raise LayerError("corrupt layer stream: gzip stream ends early")
            try:
                out = self._d.decompress(data, want)
            except zlib.error as e:
                raise LayerError(f"corrupt layer stream: {e}") from e
            if out:
                n = len(out)
                b[:n] = out
                return n
        return 0


class _Zstd(io.RawIOBase):
    """zstd through the ``zstd`` CLI (no zstd in the stdlib); a thread feeds its stdin."""

    def __init__(self, src: Readable, first: bytes) -> None:
        try:
            self._proc = subprocess.Popen(
                ["zstd", "-d", "-c", "-q", "--no-progress"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise LayerError(f"a zstd layer needs the zstd program: {e.strerror}") from None
        self.feed_error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, args=(src, first), daemon=True)
        self._feeder.start()

    def _feed(self, src: Readable, first: bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            data = first
            while data:
                stdin.write(data)
                data = src.read(CHUNK)
        except BrokenPipeError:
            pass  # zstd stopped early; its exit status tells why
        except BaseException as e:  # a source error: reported by close()
            self.feed_error = e
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        assert self._proc.stdout is not None
        return self._proc.stdout.readinto(b)  # type: ignore[attr-defined]

    def finish(self) -> None:
        """Wait for zstd; raise if it or the source failed."""
        assert self._proc.stdout is not None and self._proc.stderr is not None
        while self._proc.stdout.read(CHUNK):
            pass
        rc = self._proc.wait()
        self._feeder.join()
        if self.feed_error is not None:
            raise self.feed_error
        if rc != 0:
            err = self._proc.stderr.read().decode(errors="replace").strip()
            raise LayerError(f"zstd decompression failed: {err or rc}")

    def kill(self) -> None:
        """Stop zstd (if still running) and release its pipes."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


class _Plain(io.RawIOBase):
    def __init__(self, src: Readable, first: bytes) -> None:
        self._src = src
        self._first = first

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data, self._first = (self._first, b"") if self._first else (self._src.read(len(b)), b"")
        n = len(data)
        b[:n] = data
        return n


class _ForwardOnly(io.RawIOBase):
    """A stream that can "seek" forward by skipping: tarfile's ``r:`` mode seeks to each
    header and data block, never backwards in a one-pass walk. Unlike ``r|`` mode (which
    copies every block through small buffers), file contents pass through with one copy.

    Where the stream ends after the last entry's data (``required``, set by the caller as it
    reaches each entry), it reads on as zeros up to the next 512-byte block and two blocks
    more: real build tools (Go's archive/tar writer left unclosed, as in umoci 0.4.7's
    ``insert``) leave out the last entry's padding and the end-of-archive blocks, which
    Docker and containerd accept. A stream that ends inside an entry's data is still cut
    short, and the zeros are not hashed: the diff_id is checked against the real bytes.
    """

    def __init__(self, inner: io.BufferedReader[Any]) -> None:
        self._inner = inner
        self._pos = 0
        self.required = 0  # the stream may not end before this offset
        self._pad: int | None = None  # zeros left to give once the stream has ended

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a layer stream only seeks forward")
        if offset < self._pos:
            raise LayerError("not a valid tar stream: it would need to go backwards")
        while self._pos < offset:
            if not self.read(min(CHUNK, offset - self._pos)):
                break
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        data = self._inner.read(-1 if n is None else n) if self._pad is None else b""
        if not data and n != 0 and self._pos >= self.required:
            if self._pad is None:
                self._pad = (-self._pos % tarfile.BLOCKSIZE) + 2 * tarfile.BLOCKSIZE
            take = self._pad if n is None or n < 0 else min(n, self._pad)
            self._pad -= take
            data = bytes(take)
        self._pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def _decompressor(src: Readable) -> io.RawIOBase:
    """The layer's uncompressed stream, by magic bytes (media types lie sometimes)."""
    first = b""
    while len(first) < 4:
        more = src.read(CHUNK)
        if not more:
            break
        first += more
    if first.startswith(GZIP_MAGIC):
        return _Gunzip(src, first)
    if first.startswith(ZSTD_MAGIC):
        return _Zstd(src, first)
    return _Plain(src, first)


def _check_path(name: str, entry: str) -> list[str]:
    """Components of a member path, taken from the layer's root: a leading ``/`` or ``./``
    means the root too (as Docker and containerd read such layers); raise on ``..``."""
    if "\0" in name:
        raise UnsafeEntry(entry, "NUL byte in path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntry(entry, "path escapes the layer root ('..')")
    return parts


def _proc_path(dir_fd: int, name: str = "") -> str:
    return f"/proc/self/fd/{dir_fd}" + (f"/{name}" if name else "")


class _Extractor:
    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.dir_times: list[tuple[list[str], int]] = []

    def close(self) -> None:
        os.close(self.root_fd)

    # --- walking ----------------------------------------------------------------------
    def open_dir(self, parts: list[str], entry: str, create: bool) -> int:
        """fd of the directory at ``parts`` under the root; never through a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise UnsafeEntry(entry, f"parent {comp!r} does not exist") from None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        st = os.lstat(comp, dir_fd=fd)
                        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                        raise UnsafeEntry(entry, f"parent {comp!r} is {kind}") from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def clear(self, dir_fd: int, name: str, keep_dir: bool) -> bool:
        """Remove what is at ``name`` (never following it); True if a dir was kept."""
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
        return False

    # --- metadata ---------------------------------------------------------------------
    @staticmethod
    def xattrs(m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
                data = value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name = key[len("LIBARCHIVE.xattr."):]
                try:
                    data = base64.b64decode(value + "=" * (-len(value) % 4))
                except ValueError:
                    continue
            else:
                continue
            if not name.startswith(FORBIDDEN_XATTR_PREFIXES):
                out.append((name, data))
        return out

    @staticmethod
    def set_xattrs(target: int | str, attrs: list[tuple[str, bytes]], entry: str) -> None:
        """``target``: an open fd, or a path whose last component is not followed."""
        for name, value in attrs:
            try:
                os.setxattr(target, name, value, follow_symlinks=isinstance(target, int))
            except OSError as e:
                if e.errno in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    continue  # e.g. security.selinux on a host without it
                raise LayerError(f"entry {entry!r}: cannot set xattr {name}: {e.strerror}") from e

    # --- one member -------------------------------------------------------------------
    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        entry = m.name
        parts = _check_path(m.name, entry)
        if not parts:  # "./": the layer's root directory
            if m.isdir():
                os.chown(self.root_fd, m.uid, m.gid)
                os.chmod(self.root_fd, stat.S_IMODE(m.mode))
                self.dir_times.append(([], _mtime_ns(m)))
            return
        parent, base = parts[:-1], parts[-1]
        if base.startswith(WHITEOUT):
            self.whiteout(parent, base, entry)
            return
        pfd = self.open_dir(parent, entry, create=True)
        try:
            self.create(tar, m, pfd, parts, entry)
        finally:
            os.close(pfd)

    def whiteout(self, parent: list[str], base: str, entry: str) -> None:
        pfd = self.open_dir(parent, entry, create=True)
        try:
            if base == OPAQUE:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT + WHITEOUT):
                return  # other AUFS metadata (.wh..wh.plnk ...): meaningless here
            target = base[len(WHITEOUT):]
            if target in ("", ".", ".."):
                raise UnsafeEntry(entry, "whiteout of an invalid name")
            self.clear(pfd, target, keep_dir=False)
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        finally:
            os.close(pfd)

    def create(
        self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: list[str], entry: str
    ) -> None:
        base = parts[-1]
        mode = stat.S_IMODE(m.mode)
        mtime = _mtime_ns(m)
        attrs = self.xattrs(m)
        if m.isdir():
            if not self.clear(pfd, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                os.fchown(fd, m.uid, m.gid)
                os.fchmod(fd, mode)
                self.set_xattrs(fd, attrs, entry)
            finally:
                os.close(fd)
            self.dir_times.append((parts, mtime))
            return
        if m.islnk():
            self.hardlink(m, pfd, parts, entry)
            return
        self.clear(pfd, base, keep_dir=False)
        if m.isreg():
            fd = os.open(
                base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600, dir_fd=pfd,
            )
            try:
                src = tar.extractfile(m)
                if src is not None:
                    with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                        shutil.copyfileobj(src, out, CHUNK)
                os.fchown(fd, m.uid, m.gid)
                os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
                self.set_xattrs(fd, attrs, entry)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
            return
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            return
        if m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            dev = os.makedev(m.devmajor, m.devminor) if not m.isfifo() else 0
            os.mknod(base, kind | mode, dev, dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            # the node was just made here by us: following its name cannot leave the root
            os.chmod(base, mode, dir_fd=pfd)
            self.set_xattrs(_proc_path(pfd, base), attrs, entry)
            os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            return
        raise LayerError(f"entry {entry!r}: unsupported tar entry type {m.type!r}")

    def hardlink(self, m: tarfile.TarInfo, pfd: int, parts: list[str], entry: str) -> None:
        # an absolute target names a path in the layer, not on the host: resolved from the
        # layer's root like every other name
        try:
            lparts = _check_path(m.linkname, entry)
        except UnsafeEntry:
            raise UnsafeEntry(entry, f"hardlink target {m.linkname!r} escapes the layer") from None
        if not lparts:
            raise UnsafeEntry(entry, "hardlink to the layer root")
        try:
            lfd = self.open_dir(lparts[:-1], entry, create=False)
        except UnsafeEntry as e:
            if "does not exist" not in e.reason:
                raise
            raise UnsafeEntry(
                entry, f"hardlink target {m.linkname!r} is not in this layer") from None
        try:
            try:
                st = os.lstat(lparts[-1], dir_fd=lfd)
            except FileNotFoundError:
                raise UnsafeEntry(
                    entry, f"hardlink target {m.linkname!r} is not in this layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeEntry(entry, f"hardlink to directory {m.linkname!r}")
            if lparts == parts:
                return  # a link to itself: nothing to do
            self.clear(pfd, parts[-1], keep_dir=False)
            os.link(lparts[-1], parts[-1], src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(lfd)

    def finish(self) -> None:
        """Directory mtimes last (creating children changed them), deepest first."""
        for parts, mtime in sorted(self.dir_times, key=lambda t: -len(t[0])):
            try:
                fd = self.open_dir(parts, "/".join(parts), create=False)
            except (UnsafeEntry, OSError):
                continue  # replaced later in the layer by something else
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)


def _mtime_ns(m: tarfile.TarInfo) -> int:
    try:
        return int(float(m.mtime) * 1_000_000_000)
    except (TypeError, ValueError, OverflowError):
        return 0


def unpack(source: str | Readable, dest: str,
           expected_diff_id: str | None = None) -> UnpackResult:
    """Unpack a layer (a blob path, or a stream such as a registry response) into the empty
    directory ``dest``. A stream is read only as far as the tar's end; the caller drains it.

    Raises UnsafeEntry / LayerError; the caller discards ``dest`` on any error.
    """
    if isinstance(source, str):
        with open(source, "rb") as f:
            return unpack(f, dest, expected_diff_id)
    ex = _Extractor(dest)
    count = 0
    stream: io.RawIOBase | None = None
    try:
        stream = _decompressor(source)
        hashed = _HashingReader(stream)
        buffered = io.BufferedReader(hashed, CHUNK)
        try:
            fwd = _ForwardOnly(buffered)
            with tarfile.open(fileobj=fwd, mode="r:", errorlevel=2) as tar:
                for m in tar:
                    full = m.isreg() and not m.issparse()  # a sparse entry stores less
                    fwd.required = m.offset_data + (m.size if full else 0)
                    ex.member(tar, m)
                    count += 1
        except tarfile.TarError as e:
            raise LayerError(f"not a valid tar stream: {e}") from e
        except EOFError as e:
            raise LayerError(f"corrupt layer stream: {e}") from e
        # the end-of-archive blocks and padding are part of the diff_id too
        while buffered.read(CHUNK):
            pass
        if isinstance(stream, _Zstd):
            stream.finish()
        ex.finish()
    except LayerError:
        if isinstance(stream, _Zstd):
            stream.kill()  # joins the feeder: a source error (network) is the real cause
            if stream.feed_error is not None:
                raise stream.feed_error from None
        raise
    finally:
        if isinstance(stream, _Zstd):
            stream.kill()
        ex.close()
    diff_id = "sha256:" + hashed.hash.hexdigest()
    if expected_diff_id and diff_id != expected_diff_id:
        raise LayerError(f"diff_id mismatch: config says {expected_diff_id}, content is {diff_id}")
    return UnpackResult(diff_id=diff_id, size=hashed.count, entries=count)
