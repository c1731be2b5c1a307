"""The image service: pulls (in-process registry client), blobs, snapshots, rootfs mounts."""

from shim.images.manager import FsInfo, ImageManager
from shim.images.manifest import ImageConfig

__all__ = ["FsInfo", "ImageConfig", "ImageManager"]
