from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cni.config import (
    ConfigInvalid,
    conf_files,
    load_default_network,
    parse_conflist,
    parse_single_conf,
)
from cni.manager import CNIManager
from cni.watcher import ConfWatcher


@pytest.fixture
def plugin_dir(tmp_path: Path) -> str:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bridge", "portmap", "loopback"):
        p = d / name
        p.write_text("#!/bin/sh\nexit 0\n")
        p.chmod(0o755)
    return str(d)


def write(d: Path, name: str, doc: object) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def conflist(name: str, *types: str, version: str = "1.0.0", **extra: object) -> dict[str, object]:
    return {"cniVersion": version, "name": name, "plugins": [{"type": t} for t in types], **extra}


def test_conflist_parsed_with_capabilities_and_disable_check() -> None:
    data = json.dumps({
        "cniVersion": "0.4.0", "name": "net1", "disableCheck": "True",
        "plugins": [{"type": "bridge"},
                    {"type": "portmap",
                     "capabilities": {"portMappings": True, "bandwidth": False}}],
    }).encode()
    net = parse_conflist(data, "x.conflist")
    assert net.name == "net1"
    assert net.cni_version == "0.4.0"
    assert net.disable_check is True
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0].capabilities == frozenset()
    assert net.plugins[1].capabilities == frozenset({"portMappings"})
    assert net.bytes == data
    assert net.source == "x.conflist"


@pytest.mark.parametrize(("doc", "reason"), [
    ("{not json", "error parsing"),
    ("[]", "not a JSON object"),
    ({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}, "missing network name"),
    ({"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "b"}]}, "invalid network"),
    ({"name": "n", "plugins": [{"type": "bridge"}]}, "missing cniVersion"),
    ({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "bridge"}]}, "unsupported"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": []}, "no plugins"),
    ({"cniVersion": "1.0.0", "name": "n"}, "no plugins"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"ipam": {}}]}, "missing 'type'"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}, "invalid type"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "b", "capabilities": []}]},
     "capabilities"),
    ({"cniVersion": "1.0.0", "name": "n", "disableCheck": "maybe", "plugins": [{"type": "b"}]},
     "disableCheck"),
])
def test_invalid_conflists(doc: object, reason: str) -> None:
    data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
    with pytest.raises(ConfigInvalid, match=reason):
        parse_conflist(data)


def test_cni_versions_list_picks_highest_implemented() -> None:
    doc = {"cniVersion": "0.4.0", "cniVersions": ["1.0.0", "9.9.9", "0.3.1"], "name": "n",
           "plugins": [{"type": "bridge"}]}
    assert parse_conflist(json.dumps(doc).encode()).cni_version == "1.0.0"


def test_single_conf_is_wrapped_like_libcni() -> None:
    raw = {"cniVersion": "0.3.1", "name": "single", "type": "bridge", "bridge": "cni0"}
    net = parse_single_conf(json.dumps(raw).encode(), "10-single.conf")
    assert net.name == "single"
    assert net.cni_version == "0.3.1"
    assert len(net.plugins) == 1
    assert net.plugins[0].type == "bridge"
    assert dict(net.plugins[0].raw) == raw
    assert json.loads(net.bytes) == {"cniVersion": "0.3.1", "name": "single", "plugins": [raw]}
    # Go's encoding/json: compact, keys sorted.
    assert net.bytes.startswith(b'{"cniVersion":"0.3.1","name":"single","plugins":[{"bridge"')


def test_conf_files_lexical_order_and_extensions(tmp_path: Path) -> None:
    d = tmp_path / "net.d"
    for name in ("20-b.conf", "10-a.conflist", "30-c.json", "05-x.txt", "00-y.conflist.bak"):
        write(d, name, "{}")
    (d / "01-dir.conflist").mkdir()
    assert [os.path.basename(p) for p in conf_files(str(d))] == [
        "10-a.conflist", "20-b.conf", "30-c.json"]
    assert conf_files(str(tmp_path / "missing")) == []


def test_first_valid_network_wins_and_invalid_are_skipped(tmp_path: Path, plugin_dir: str) -> None:
    d = tmp_path / "net.d"
    write(d, "00-broken.conflist", "{")
    write(d, "05-old.conflist", conflist("old", "bridge", version="0.2.0"))
    write(d, "10-missing-plugin.conflist", conflist("nope", "bridge", "flannel"))
    write(d, "20-good.conf", {"cniVersion": "1.0.0", "name": "good", "type": "bridge"})
    write(d, "30-later.conflist", conflist("later", "bridge"))
    loaded = load_default_network(str(d), [str(tmp_path / "empty"), plugin_dir])
    assert loaded.network is not None
    assert loaded.network.name == "good"
    assert loaded.network.source.endswith("20-good.conf")
    reasons = dict((os.path.basename(p), r) for p, r in loaded.skipped)
    assert list(reasons) == ["00-broken.conflist", "05-old.conflist",
                             "10-missing-plugin.conflist"]
    assert "unsupported cniVersion '0.2.0'" in reasons["05-old.conflist"]
    assert 'CNI plugin "flannel" not found in' in reasons["10-missing-plugin.conflist"]
    assert plugin_dir in reasons["10-missing-plugin.conflist"]


def test_ready_reports_why(tmp_path: Path, plugin_dir: str) -> None:
    d = tmp_path / "net.d"
    m = CNIManager(str(d), [plugin_dir], str(tmp_path / "cache"))
    assert m.ready() == (False, f"no valid CNI network config in {d}")
    assert m.network() is None

    write(d, "10-x.conflist", conflist("x", "calico"))
    m = CNIManager(str(d), [plugin_dir], str(tmp_path / "cache"))
    ok, reason = m.ready()
    assert not ok
    assert reason.startswith(f"no valid CNI network config in {d}: 10-x.conflist: ")
    assert '"calico" not found' in reason


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watcher_reloads_on_change_at_most_once_per_interval(
        tmp_path: Path, plugin_dir: str) -> None:
    d = tmp_path / "net.d"
    d.mkdir()
    clock = FakeClock()
    w = ConfWatcher(str(d), [plugin_dir], interval=1.0, clock=clock)
    assert w.current().network is None

    write(d, "10-a.conflist", conflist("a", "bridge"))
    assert w.current().network is None  # within the interval: cached answer
    clock.now += 1.5
    net = w.current().network
    assert net is not None and net.name == "a"

    # A lexically earlier file takes over.
    write(d, "05-b.conflist", conflist("b", "bridge"))
    clock.now += 1.5
    net = w.current().network
    assert net is not None and net.name == "b"

    # Rewriting a file (new inode/size) is noticed even if the dir mtime is unchanged.
    p = d / "05-b.conflist"
    st = os.stat(d)
    tmp = d / "tmp"
    tmp.write_text(json.dumps(conflist("b2", "bridge")))
    os.replace(tmp, p)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    clock.now += 1.5
    net = w.current().network
    assert net is not None and net.name == "b2"


def test_watcher_notices_plugin_installed_later(tmp_path: Path) -> None:
    d = tmp_path / "net.d"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write(d, "10-a.conflist", conflist("a", "bridge"))
    clock = FakeClock()
    w = ConfWatcher(str(d), [str(bindir)], clock=clock)
    assert w.current().network is None
    (bindir / "bridge").write_text("#!/bin/sh\n")
    clock.now += 2
    assert w.current().network is not None
