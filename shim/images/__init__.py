"""The image service: pulls (skopeo), blob store, layer snapshots, overlay rootfs mounts."""

from shim.images.manager import FsInfo, ImageManager
from shim.images.manifest import ImageConfig

__all__ = ["FsInfo", "ImageConfig", "ImageManager"]
