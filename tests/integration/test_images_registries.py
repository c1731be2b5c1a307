"""Where images come from: mirrors, insecure registries, search registries, aliases, blocks,
and the errors kubelet sees when a pull cannot work."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import grpc

from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import ImageDaemon, StartDaemon, daemon_config
from tests.rig.connectproxy import ConnectProxy
from tests.rig.images import ImageRegistry, PushedImage


def test_mirror_from_tether_config(
    registry: ImageRegistry, docker_hub_mirror: PushedImage, start_image_daemon: StartDaemon
) -> None:
    d = start_image_daemon(
        daemon_config(insecure=[registry.host], mirrors={"docker.io": [registry.host]})
    )
    image_id = d.pull("busybox")
    st = d.status("busybox").image
    assert st.id == image_id
    assert list(st.repo_tags) == ["docker.io/library/busybox:latest"]
    assert list(st.repo_digests) == [f"docker.io/library/busybox@{docker_hub_mirror.digest}"]
    assert d.status("docker.io/library/busybox:latest").image.id == image_id
    assert d.status("library/busybox").image.id == image_id


def test_mirror_from_registries_conf(
    registry: ImageRegistry, docker_hub_mirror: PushedImage, start_image_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(
        'unqualified-search-registries = ["docker.io"]\n'
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
        f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    d = start_image_daemon(daemon_config(registries_conf=str(conf)))
    d.pull("busybox:latest")
    assert list(d.status("busybox").image.repo_tags) == ["docker.io/library/busybox:latest"]


def test_insecure_registry_needs_config(
    registry: ImageRegistry, start_image_daemon: StartDaemon
) -> None:
    plain = start_image_daemon("", name="plain")
    err = plain.pull_error(registry.ref("busybox"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert registry.ref("busybox") in err.details()
    assert "HTTP response to HTTPS client" in err.details()
    ok = start_image_daemon(daemon_config(insecure=[registry.host]), name="insecure")
    assert ok.pull(registry.ref("busybox")).startswith("sha256:")


def test_search_registries_and_aliases(
    registry: ImageRegistry, start_image_daemon: StartDaemon, tmp_path: Path
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = ["127.0.0.1:9", "{registry.host}"]\n'
        f'[aliases]\n"webby" = "{registry.host}/web"\n'
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    d = start_image_daemon(daemon_config(registries_conf=str(conf)))
    bb = d.pull("busybox")
    assert list(d.status(bb).image.repo_tags) == [f"{registry.host}/busybox:latest"]
    assert d.status("busybox").image.id == bb
    web = d.pull("webby")
    assert list(d.status(web).image.repo_tags) == [f"{registry.host}/web:latest"]
    assert d.status("webby:latest").image.id == web


def test_blocked_registry(
    registry: ImageRegistry, start_image_daemon: StartDaemon, tmp_path: Path
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n')
    d = start_image_daemon(daemon_config(registries_conf=str(conf), insecure=[registry.host]))
    err = d.pull_error(registry.ref("busybox"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    assert registry.ref("busybox") in err.details()


def test_not_found(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    for ref in (f"{registry.host}/busybox:no-such-tag", f"{registry.host}/no-such-repo:1",
                f"{registry.host}/busybox@sha256:{'0' * 64}"):
        err = image_daemon.pull_error(ref)
        assert err.code() == grpc.StatusCode.NOT_FOUND, (ref, err.details())
        assert ref in err.details()


def test_unreachable_registry(image_daemon: ImageDaemon) -> None:
    err = image_daemon.pull_error("127.0.0.1:9/busybox:latest")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1:9/busybox:latest" in err.details()
    assert "connection refused" in err.details()


def test_malformed_references(image_daemon: ImageDaemon) -> None:
    for ref in ("Busybox", "busybox:bad tag", "busybox@sha256:1234", "-x/y", "a" * 64,
                "127.0.0.1:5000/UPPER:1", "busy//box"):
        err = image_daemon.pull_error(ref)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref, err.details())
        assert ref in err.details()


def test_search_registries_all_fail(
    registry: ImageRegistry, start_image_daemon: StartDaemon, tmp_path: Path
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = ["127.0.0.1:9", "{registry.host}"]\n'
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    d = start_image_daemon(daemon_config(registries_conf=str(conf)))
    err = d.pull_error("no-such-image:1")
    # the unreachable registry is the more telling failure than "not found" on the other
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert "no-such-image:1" in err.details()
    assert f"{registry.host}/no-such-image:1" in err.details()


def test_moved_tag(
    registry: ImageRegistry, test_images: Path, image_daemon: ImageDaemon
) -> None:
    from tests.rig.images import push_image

    ref = push_image(registry.host, "busybox", cache_dir=test_images, repo="moving").ref
    first = image_daemon.pull(ref)
    push_image(registry.host, "web", cache_dir=test_images, repo="moving")
    second = image_daemon.pull(ref)
    assert first != second
    assert list(image_daemon.status(second).image.repo_tags) == [ref]
    old = image_daemon.status(first).image
    assert list(old.repo_tags) == [] and len(old.repo_digests) == 1
    assert image_daemon.status(ref).image.id == second


def test_pull_through_proxy(registry: ImageRegistry, start_image_daemon: StartDaemon) -> None:
    """HTTP(S)_PROXY in the daemon's environment: registry traffic goes through the proxy
    (CONNECT tunnel, with the proxy's credentials); NO_PROXY hosts go direct."""
    proxy = ConnectProxy(need_auth="Basic " + base64.b64encode(b"px:secret").decode())
    try:
        url = f"http://px:secret@127.0.0.1:{proxy.port}"
        d = start_image_daemon(daemon_config(insecure=[registry.host]), name="proxied",
                               env={"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": ""})
        assert d.pull(registry.ref("busybox")).startswith("sha256:")
        assert proxy.tunnels and set(proxy.tunnels) == {registry.host}
        bypass = start_image_daemon(
            daemon_config(insecure=[registry.host]), name="bypass",
            env={"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": "127.0.0.1"})
        before = len(proxy.tunnels)
        assert bypass.pull(registry.ref("web")).startswith("sha256:")
        assert len(proxy.tunnels) == before
        wrong = start_image_daemon(
            daemon_config(insecure=[registry.host]), name="wrong",
            env={"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": ""})
        err = wrong.pull_error(registry.ref("layers"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
        assert registry.ref("layers") in err.details() and "proxy" in err.details().lower()
    finally:
        proxy.close()


def test_sighup_rereads_registries_config(
    registry: ImageRegistry, start_image_daemon: StartDaemon, tmp_path: Path
) -> None:
    """An operator edits registries.conf (or Tether's [images] keys) and sends SIGHUP: the
    next pull uses the new settings, without a restart."""
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["docker.io"]\n')
    d = start_image_daemon(daemon_config(registries_conf=str(conf)))
    err = d.pull_error(registry.ref("busybox"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()

    def reloads() -> list[dict[str, object]]:
        return [json.loads(x) for x in d.daemon.logs().splitlines() if "config reloaded" in x]

    conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    d.daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not reloads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reloads()[-1]["registries_conf_changed"] is True
    assert d.pull(registry.ref("busybox")).startswith("sha256:")
    # and a key of Tether's own config: the pause image becomes pinned
    d.daemon.config_path.write_text(daemon_config(
        registries_conf=str(conf), pause_image=registry.ref("busybox")))
    d.daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(reloads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reloads()[-1]["applied"] == {
        "images.pause_image": {"old": "", "new": registry.ref("busybox")}}
    assert d.status(registry.ref("busybox")).image.pinned


def test_registries_conf_dropins(
    registry: ImageRegistry, docker_hub_mirror: PushedImage, start_image_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    """A drop-in in images.registries_conf_dir adds a mirror for docker.io (as packages and
    operators drop files into /etc/containers/registries.conf.d)."""
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["docker.io"]\n')
    dropins = tmp_path / "registries.conf.d"
    dropins.mkdir()
    (dropins / "50-mirror.conf").write_text(
        '[[registry]]\nlocation = "docker.io"\n'
        f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    d = start_image_daemon(daemon_config(registries_conf=str(conf),
                                         registries_conf_dir=str(dropins)))
    d.pull("busybox")
    assert list(d.status("busybox").image.repo_digests) == [
        f"docker.io/library/busybox@{docker_hub_mirror.digest}"]
