"""Building the repository's Dockerfile without a Docker daemon: rootful buildah with vfs
storage kept in the test's own directory, offline.

No base image can be pulled here, so the base is the Debian 12 minbase root filesystem that
scripts/image-inputs.sh makes (outside the test network namespace, cached), imported as a
local image and passed as ``--build-arg BASE=``. The build's apt reads a flat repository of
the .debs that script downloaded (a bind over /etc/apt/sources.list.d), and its pip the
wheels it downloaded (``PIP_NO_INDEX``/``PIP_FIND_LINKS``, which the Dockerfile declares).

Every buildah command runs in a private mount namespace with a directory of the test bound
over /var/lib/containers: buildah keeps its blob-info cache there whatever ``--root`` says,
and the host's container storage must neither see nor keep anything of these builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INPUTS_SCRIPT = REPO_ROOT / "scripts" / "image-inputs.sh"
HOST_STORAGE = Path("/var/lib/containers")
BASE_IMAGE = "localhost/tether-test/debian:12-slim"
# inside the build: where the inputs are mounted
DEBS_IN_BUILD = "/srv/tether-debs"
WHEELS_IN_BUILD = "/srv/tether-wheels"


class InputsMissing(RuntimeError):
    """scripts/image-inputs.sh has not made the current inputs (it needs the host network)."""


@dataclass(frozen=True)
class ImageInputs:
    base_tar: Path
    debs: Path
    wheels: Path


def image_inputs() -> ImageInputs:
    """The current inputs, as ``image-inputs.sh --print`` names them; never fetches."""
    # the key hashes what this venv's python reads from pyproject.toml, as test.sh's run did
    env = dict(os.environ, TETHER_VENV=sys.prefix)
    res = subprocess.run(["bash", str(INPUTS_SCRIPT), "--print"], capture_output=True,
                         text=True, env=env, check=False)
    if res.returncode != 0:
        raise InputsMissing(res.stderr.strip() or f"{INPUTS_SCRIPT} --print exited "
                            f"{res.returncode}")
    d = Path(res.stdout.strip())
    return ImageInputs(base_tar=d / "base.tar", debs=d / "debs", wheels=d / "wheels")


def build_args() -> dict[str, str]:
    """The Dockerfile's build arguments for an offline build from the inputs."""
    return {"BASE": BASE_IMAGE, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS_IN_BUILD}


def build_volumes(inputs: ImageInputs, apt_sources: Path) -> list[tuple[Path, str]]:
    """(host path, path in the build), all read-only: the local apt repository replaces the
    base's sources, and the wheels."""
    return [(inputs.debs, DEBS_IN_BUILD), (apt_sources, "/etc/apt/sources.list.d"),
            (inputs.wheels, WHEELS_IN_BUILD)]


def local_apt_sources(directory: Path) -> Path:
    """A sources.list.d with only the flat repository of the inputs' .debs."""
    directory.mkdir(parents=True, exist_ok=True)
    # trusted: the .debs were fetched and verified by apt on the host (mmdebstrap)
    (directory / "tether-local.list").write_text(f"deb [trusted=yes] file:{DEBS_IN_BUILD} ./\n")
    return directory


@dataclass
class Buildah:
    binary: str
    work: Path  # everything buildah keeps: storage, run root, temp files, blob-info cache
    made_host_storage: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not HOST_STORAGE.exists():
            # an empty mount point to bind over, removed again by cleanup()
            HOST_STORAGE.mkdir(mode=0o700, parents=True)
            self.made_host_storage = True

    @property
    def root(self) -> Path:
        return self.work / "root"

    def argv(self, *args: str) -> list[str]:
        hide = self.work / "host-storage"
        hide.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--root", str(self.root), "--runroot", str(self.work / "runroot"),
               "--storage-driver", "vfs", *args]
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" ' + str(HOST_STORAGE) + ' && exec "$@"', str(hide), *cmd]

    def run(self, *args: str, timeout: float = 600) -> str:
        tmp = self.work / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        auth = self.work / "auth.json"
        if not auth.exists():  # no credentials of the host's: the registry asks for none
            auth.write_text("{}")
        env = dict(os.environ, TMPDIR=str(tmp), REGISTRY_AUTH_FILE=str(self.work / "auth.json"))
        res = subprocess.run(self.argv(*args), capture_output=True, text=True, env=env,
                             timeout=timeout, check=False)
        if res.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} exited {res.returncode}:\n"
                                 f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
        return res.stdout

    def import_rootfs(self, tarball: Path, name: str) -> str:
        """A one-layer image ``name`` of a root filesystem tarball; its id."""
        ctr = self.run("from", "--pull=never", "scratch").strip()
        self.run("add", ctr, str(tarball), "/")
        return self.run("commit", "--quiet", "--rm", ctr, name).strip()

    def bud(self, context: Path, tag: str, build_args: dict[str, str],
            volumes: list[tuple[Path, str]]) -> str:
        """``buildah bud`` of ``context``'s Dockerfile: no network, no pulls; the output."""
        args = ["bud", "--pull=never", "--network=none", "--tag", tag]
        for k, v in build_args.items():
            args += ["--build-arg", f"{k}={v}"]
        for host, inside in volumes:
            args += ["--volume", f"{host}:{inside}:ro"]
        return self.run(*args, str(context))

    def push(self, image: str, dest: str) -> str:
        """Push to a plain-http registry; the manifest digest it got."""
        digestfile = self.work / "digest"
        self.run("push", "--quiet", "--tls-verify=false", "--digestfile", str(digestfile),
                 image, f"docker://{dest}")
        return digestfile.read_text().strip()

    def cleanup(self) -> None:
        """Images and containers gone, then the whole work dir (vfs leaves no mounts).
        Idempotent."""
        try:
            if self.root.exists():
                self.run("rm", "--all", timeout=120)
                self.run("rmi", "--all", "--force", timeout=120)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            if self.made_host_storage:
                HOST_STORAGE.rmdir()  # nothing went in: it was always bound over
                self.made_host_storage = False

