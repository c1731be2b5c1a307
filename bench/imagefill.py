"""Many small, distinct images in a registry: the image workload's "200 images" setup.

``python -m bench.imagefill --registry 127.0.0.1:5000 --prefix tether-bench/fill- -n 200``
pushes ``<registry>/<prefix>000:latest`` … ``<prefix>199:latest``: each a distinct OCI image
(own config, own one-file layer, so own digests — no two share a blob), a few hundred bytes
each, built in memory and pushed with the registry's HTTP API (plain HTTP: a local bench
registry only). The image workload (``--image-fill N --image-fill-prefix REF``) then pulls
them through each runtime's CRI ImageService before it measures ListImages / ImageStatus.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def fill_refs(prefix: str, n: int) -> list[str]:
    """The image references of a fill set: ``<prefix>000:latest`` …"""
    width = max(3, len(str(max(n - 1, 0))))
    return [f"{prefix}{i:0{width}d}:latest" for i in range(n)]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(i: int) -> tuple[bytes, bytes, bytes]:
    """(layer.tar.gz, config JSON, manifest JSON) of fill image ``i`` (deterministic)."""
    content = f"tether-bench fill image {i}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"fill-{i}")
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"tether-bench.fill": str(i)}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": _digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    return layer, config, manifest


def _request(method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        return resp.status, dict(resp.headers)


def push_blob(base: str, repo: str, blob: bytes) -> None:
    digest = _digest(blob)
    try:
        _request("HEAD", f"{base}/v2/{repo}/blobs/{digest}")
        return  # already there
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    _, headers = _request("POST", f"{base}/v2/{repo}/blobs/uploads/")
    loc = headers.get("Location") or headers.get("location") or ""
    url = urllib.parse.urljoin(base + "/", loc)
    url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
    _request("PUT", url, blob, {"Content-Type": "application/octet-stream"})


def push_fill(registry: str, prefix: str, n: int) -> list[str]:
    """Push ``n`` fill images to ``registry`` (host:port, plain HTTP); their references."""
    base = f"http://{registry}"
    refs = fill_refs(f"{registry}/{prefix}", n)
    for i, ref in enumerate(refs):
        repo = ref[len(registry) + 1:].rsplit(":", 1)[0]
        layer, config, manifest = build_image(i)
        push_blob(base, repo, layer)
        push_blob(base, repo, config)
        _request("PUT", f"{base}/v2/{repo}/manifests/latest", manifest,
                 {"Content-Type": MANIFEST_TYPE})
    return refs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.imagefill",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--registry", required=True, help="host:port (plain HTTP)")
    p.add_argument("--prefix", default="tether-bench/fill-", help="repository name prefix")
    p.add_argument("-n", type=int, default=200)
    a = p.parse_args(argv)
    refs = push_fill(a.registry, a.prefix, a.n)
    print(f"pushed {len(refs)} images {refs[0] if refs else ''} … {refs[-1] if refs else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
