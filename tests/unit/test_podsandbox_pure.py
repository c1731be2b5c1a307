"""Pure parts of the sandbox layer: cgroup paths, sysctl rules, resolv.conf, the pause-holder
command line, the CRI request conversion, a pod's stored details and its views."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from cni.types import Bandwidth, DNSConfig, PortMapping
from podsandbox import cgroups, files, pauseholder, sysctls, views
from podsandbox.types import (
    IDMapping,
    Mode,
    NamespaceModes,
    Process,
    SandboxDetails,
    UserNamespace,
)
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import sandbox_convert as conv
from shim.store import SandboxRecord


def test_expand_slice() -> None:
    assert cgroups.expand_slice("kubepods-besteffort-pod1.slice") == (
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice")
    assert cgroups.expand_slice("tether.slice") == "tether.slice"
    assert cgroups.expand_slice("-.slice") == ""


def test_pod_cgroup_paths() -> None:
    assert cgroups.pod_cgroup("/kubepods/pod1", "cgroupfs", "abc") == "kubepods/pod1/tether-abc"
    assert cgroups.pod_cgroup("", "cgroupfs", "abc") == "tether/tether-abc"
    assert cgroups.pod_cgroup("a-b.slice", "systemd", "abc") == (
        "a.slice/a-b.slice/tether-abc.scope")
    assert cgroups.pod_cgroup("", "systemd", "abc") == "tether.slice/tether-abc.scope"
    assert cgroups.parent_path("", "cgroupfs") == "tether"
    for bad, driver in (("rel", "cgroupfs"), ("/a/../b", "cgroupfs"), ("/x", "systemd"),
                        ("a.scope", "systemd")):
        with pytest.raises(InvalidArgument, match="cgroup_parent"):
            cgroups.pod_cgroup(bad, driver, "abc")


@pytest.mark.parametrize(("driver", "parent"), [
    ("cgroupfs", ""), ("cgroupfs", "/kubepods/burstable/pod1"), ("cgroupfs", "/"),
    ("systemd", ""), ("systemd", "kubepods-besteffort-pod1.slice"), ("systemd", "-.slice"),
])
def test_a_container_sits_beside_the_pause_holder(driver: str, parent: str) -> None:
    """The container side names the pod's parent from the holder's cgroup alone (as the
    driver names it) and gets a sibling of the holder's cgroup, by either driver."""
    holder = cgroups.pod_cgroup(parent, driver, "sb1")
    name = cgroups.parent_name(posixpath.dirname(holder), driver)
    if parent:
        assert name == parent
    container = cgroups.pod_cgroup(name, driver, "c1")
    assert posixpath.dirname(container) == posixpath.dirname(holder)
    assert posixpath.basename(container) == ("tether-c1.scope" if driver == "systemd"
                                              else "tether-c1")


def test_sysctl_rules() -> None:
    pod = NamespaceModes()
    host_net = NamespaceModes(network=Mode.NODE)
    assert sysctls.validate({"net/ipv4/ip_forward": "1", "kernel.shmmax": "9"}, pod) == (
        ("kernel.shmmax", "9"), ("net.ipv4.ip_forward", "1"))
    assert sysctls.proc_path("net.ipv4.conf.eth0/100.forwarding") == (
        "/proc/sys/net/ipv4/conf/eth0.100/forwarding")
    with pytest.raises(InvalidArgument, match="not a namespaced sysctl"):
        sysctls.validate({"vm.swappiness": "1"}, pod)
    with pytest.raises(InvalidArgument, match="hostNetwork"):
        sysctls.validate({"net.core.somaxconn": "1"}, host_net)
    with pytest.raises(InvalidArgument, match="hostIPC"):
        sysctls.validate({"kernel.msgmax": "1"}, NamespaceModes(ipc=Mode.NODE))
    for hostile in ("net.//.//.//.tmp.x.victim", "net/../../../tmp/x", "net..ipv4",
                    "net.ipv4.", "Net.ipv4.ip_forward", "net.ipv4.ip_forward\n",
                    "net." + "a" * 260):
        with pytest.raises(InvalidArgument, match="not a valid sysctl name"):
            sysctls.validate({hostile: "1"}, pod)


def test_sysctl_writes_stay_under_their_root(tmp_path: Path) -> None:
    (tmp_path / "root" / "net").mkdir(parents=True)
    (tmp_path / "outside").write_text("x")
    (tmp_path / "root" / "net" / "link").symlink_to(tmp_path / "outside")
    for parts in (["net", "..", "..", "outside"], ["net", "link"], [""], []):
        with pytest.raises(OSError):
            sysctls._open_beneath(str(tmp_path / "root"), parts)
    assert (tmp_path / "outside").read_text() == "x"


def test_namespace_modes() -> None:
    assert NamespaceModes().owned() == ("net", "ipc", "uts")
    assert NamespaceModes(pid=Mode.POD).owned() == ("net", "ipc", "uts", "pid")
    host = NamespaceModes(network=Mode.NODE, ipc=Mode.NODE, pid=Mode.NODE)
    assert host.owned() == () and host.uts is Mode.NODE


def test_resolv_conf() -> None:
    text = files.render_resolv_conf(DNSConfig(("10.0.0.10",), ("a.svc", "svc"), ("ndots:5",)))
    assert text == "nameserver 10.0.0.10\nsearch a.svc svc\noptions ndots:5\n"


def test_pause_holder_command() -> None:
    argv = pauseholder.command("/usr/bin/catatonit", {"net": "/n", "pid": "/p"},
                               ["/cg/a/cgroup.procs"])
    assert argv[:3] == ["/bin/sh", "-c", pauseholder._JOIN_AND_EXEC]
    i = argv.index("unshare")
    assert argv[4:i] == ["/cg/a/cgroup.procs", "--"]
    assert argv[i:i + 5] == ["unshare", "--net=/n", "--pid=/p", "--fork", "--kill-child"]
    assert argv[-2:] == ["/usr/bin/catatonit", "-P"]
    assert "--bounding-set=-all" in argv and "--no-new-privs" in argv
    # Without a PID namespace unshare execs straight into catatonit: no fork.
    assert "--fork" not in pauseholder.command("/c", {"net": "/n"}, [])


def _request(**kw: object) -> pb.RunPodSandboxRequest:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="ns", uid="u"))
    for k, v in kw.items():
        setattr(cfg, k, v) if not isinstance(v, dict) else getattr(cfg, k).update(v)
    return pb.RunPodSandboxRequest(config=cfg)


def test_spec_from_request() -> None:
    req = _request(hostname="h", annotations={"kubernetes.io/ingress-bandwidth": "10M"})
    req.config.port_mappings.append(pb.PortMapping(container_port=80, host_port=8080,
                                                   protocol=pb.UDP))
    spec = conv.spec_from_request(req, "runc")
    assert (spec.name, spec.namespace, spec.uid, spec.hostname) == ("p", "ns", "u", "h")
    assert spec.runtime_handler == "runc"
    assert spec.port_mappings[0].protocol == "udp"
    assert spec.bandwidth is not None and spec.bandwidth.ingress_rate == 10_000_000
    assert spec.modes == NamespaceModes(network=Mode.POD, pid=Mode.POD, ipc=Mode.POD)


@pytest.mark.parametrize(("text", "value"), [("10M", 10**7), ("1Gi", 2**30), ("1.5k", 1500),
                                             ("100", 100)])
def test_parse_quantity(text: str, value: int) -> None:
    assert conv.parse_quantity(text, "f") == value


def test_spec_from_request_errors() -> None:
    with pytest.raises(InvalidArgument, match="config: required"):
        conv.spec_from_request(pb.RunPodSandboxRequest(), "runc")
    req = _request()
    req.config.metadata.uid = ""
    with pytest.raises(InvalidArgument, match=r"config\.metadata\.uid"):
        conv.spec_from_request(req, "runc")
    req = _request()
    req.config.linux.security_context.namespace_options.pid = pb.TARGET
    with pytest.raises(InvalidArgument, match=r"namespace_options\.pid"):
        conv.spec_from_request(req, "runc")
    req = _request()
    req.config.port_mappings.append(pb.PortMapping(container_port=0))
    with pytest.raises(InvalidArgument, match=r"port_mappings\[0\].container_port"):
        conv.spec_from_request(req, "runc")


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c.port_mappings.append(pb.PortMapping(container_port=80, protocol=99)),
     r"port_mappings\[0\].protocol"),
    (lambda c: c.port_mappings.extend([pb.PortMapping(container_port=80, host_port=8080),
                                       pb.PortMapping(container_port=81, host_port=8080)]),
     r"port_mappings\[1\].host_port: 8080/tcp is already mapped by config.port_mappings\[0\]"),
    (lambda c: c.dns_config.searches.append("ok.svc\nnameserver 6.6.6.6"),
     r"dns_config.searches\[0\]"),
    (lambda c: c.dns_config.options.append("ndots:5\noptions evil"), r"dns_config.options\[0\]"),
    (lambda c: c.annotations.update({"kubernetes.io/ingress-bandwidth":
                                     "99999999999999999999999E"}), "out of range"),
    (lambda c: c.annotations.update({"kubernetes.io/egress-bandwidth": "10 M"}),
     "not a quantity"),
    (lambda c: setattr(c, "log_directory", "relative/logs"), "config.log_directory"),
    (lambda c: setattr(c, "log_directory", "/var/log/pods/../../etc"), "config.log_directory"),
    (lambda c: setattr(c, "hostname", "good\n"), "config.hostname"),
])
def test_hostile_pod_configs_are_refused(change: Any, field: str) -> None:
    req = _request()
    change(req.config)
    with pytest.raises(InvalidArgument, match=field):
        conv.spec_from_request(req, "runc")


def test_same_host_port_on_other_protocols_or_ips_is_fine() -> None:
    req = _request()
    req.config.port_mappings.extend([
        pb.PortMapping(container_port=53, host_port=53, protocol=pb.UDP),
        pb.PortMapping(container_port=53, host_port=53, protocol=pb.TCP),
        pb.PortMapping(container_port=54, host_port=53, protocol=pb.TCP, host_ip="127.0.0.1"),
    ])
    req.config.dns_config.searches.extend(["default.svc.cluster.local", "cluster.local."])
    req.config.dns_config.options.extend(["ndots:5", "edns0", "timeout:2"])
    assert len(conv.spec_from_request(req, "runc").port_mappings) == 3


def test_details_round_trip_and_records_of_older_versions() -> None:
    ids = (IDMapping(0, 100000, 65536),)
    d = SandboxDetails(
        modes=NamespaceModes(network=Mode.NODE, pid=Mode.POD), pins={"pid": "/run/p"},
        holder=Process(10, 20), port_mappings=(PortMapping(80, 8080, "udp", "10.0.0.1"),),
        bandwidth=Bandwidth(ingress_rate=1000), dns=DNSConfig(("1.1.1.1",), ("svc",), ()),
        userns=UserNamespace(ids, ids), privileged=True, sysctls={"kernel.msgmax": "9000"})
    rec = SandboxRecord(id="p1", details=d)
    stored = json.loads(rec.to_json())["details"]  # as the store writes it
    # a pod's modes by kind, as the CRI names them; the rest by the fields' names
    assert stored["modes"] == {"user": "NODE", "net": "NODE", "ipc": "POD", "uts": "NODE",
                               "pid": "POD"}
    assert stored["holder"] == {"pid": 10, "start_time": 20}
    assert stored["port_mappings"] == [{"container_port": 80, "host_port": 8080,
                                        "protocol": "udp", "host_ip": "10.0.0.1"}]
    assert stored["dns"] == {"servers": ["1.1.1.1"], "searches": ["svc"], "options": []}
    assert stored["userns"]["uids"] == [{"container_id": 0, "host_id": 100000,
                                         "length": 65536}]
    assert SandboxDetails.from_dict(stored) == d and rec.copy() == rec
    # before the pod's privilege and sysctls were kept, its whole CRI config was
    old = SandboxDetails.from_dict({
        "modes": {"net": "POD", "ipc": "POD", "uts": "POD", "pid": "CONTAINER"},
        "port_mappings": [{"container_port": 80, "host_port": 0, "protocol": "tcp",
                           "host_ip": ""}],
        "config_json": json.dumps({"linux": {"securityContext": {"privileged": True},
                                             "sysctls": {"net.core.somaxconn": "1024"}}})})
    assert old.modes == NamespaceModes() and old.port_mappings == (PortMapping(80, 0),)
    assert old.privileged and old.sysctls == {"net.core.somaxconn": "1024"}


def test_views_of_a_pod() -> None:
    ids = (IDMapping(0, 100000, 65536),)
    rec = SandboxRecord(id="p1", runtime_handler="crun", details=SandboxDetails(
        modes=NamespaceModes(pid=Mode.POD, user=Mode.POD),
        pins={"user": "/ns/user-p1", "net": "/ns/net-p1", "ipc": "/ns/ipc-p1",
              "uts": "/ns/uts-p1", "pid": "/ns/pid-p1"},
        inodes={"net": 7}, cgroup="kubepods/pod1/tether-p1", sandbox_dir="/run/sb/p1",
        shm_path="/run/sb/p1/shm", hostname="web", log_directory="/var/log/pods/p1",
        userns=UserNamespace(ids, ids), sysctls={"net.core.somaxconn": "1024"}))
    pc = views.pod_context(rec, "cgroupfs")
    assert (pc.network, pc.ipc, pc.uts, pc.pid) == (Mode.POD,) * 4
    assert pc.ns_paths == {"net": "/ns/net-p1", "ipc": "/ns/ipc-p1", "uts": "/ns/uts-p1",
                           "pid": "/ns/pid-p1"}
    assert (pc.userns_path, pc.uid_mappings) == ("/ns/user-p1", ids)
    assert pc.hostname_path == "/run/sb/p1/hostname" and pc.cgroup_parent == "/kubepods/pod1"
    assert (pc.runtime_handler, pc.log_directory) == ("crun", "/var/log/pods/p1")
    assert views.pod_context(rec, "systemd").cgroup_parent == "pod1"
    st = views.status_view(rec)
    assert [(n.kind, n.mode, n.path != "", n.inode) for n in st.namespaces] == [
        ("user", Mode.POD, True, None), ("net", Mode.POD, True, 7), ("ipc", Mode.POD, True, None),
        ("uts", Mode.POD, True, None), ("pid", Mode.POD, True, None)]
    assert views.host_view(rec).netns == "/ns/net-p1"
