"""Which container uses an image: the container side's answer to the image manager's in-use
check (RemoveImage refuses an image a container runs from or mounts as a volume)."""

from __future__ import annotations

from shim.images.model import Image
from shim.store import Store


def image_user(store: Store, img: Image) -> str | None:
    """The first container record that uses ``img`` ("container <id> (<name>)"), or None.
    A record names its image by id (``image_ref``) or as the CRI gave it (``image``)."""
    names = img.names()
    for c in store.containers.list():
        if c.image_ref == img.id or c.image == img.id or c.image in names \
                or img.id in c.details.image_volume_ids:
            return f"container {c.id}" + (f" ({c.name})" if c.name else "")
    return None
