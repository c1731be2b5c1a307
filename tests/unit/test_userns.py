"""User namespaces, the pure parts: what RunPodSandbox accepts (critest's refusals among
them), Tether's own allocation, the pause-holder's command, the container spec."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cni.errdefs import ResourceExhausted
from podsandbox import pauseholder, userns
from podsandbox.types import AutoRange, IDMapping, Mode, UserNamespace
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.rpc import sandbox_convert as conv

M = [pb.IDMapping(container_id=0, host_id=1000, length=100000)]


def _request(userns_options: pb.UserNamespace | None = None, annotations: dict[str, str] | None
             = None, **modes: int) -> pb.RunPodSandboxRequest:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
                              annotations=annotations or {})
    nso = cfg.linux.security_context.namespace_options
    for k, v in modes.items():
        setattr(nso, k, v)
    if userns_options is not None:
        nso.userns_options.CopyFrom(userns_options)
    return pb.RunPodSandboxRequest(config=cfg)


def test_kubelet_mappings_make_a_pod_user_namespace() -> None:
    spec = conv.spec_from_request(_request(pb.UserNamespace(mode=pb.POD, uids=M, gids=M)), "r")
    assert spec.modes.user is Mode.POD and not spec.userns_auto
    assert spec.userns == UserNamespace((IDMapping(0, 1000, 100000),),
                                        (IDMapping(0, 1000, 100000),))
    assert spec.modes.owned()[0] == "user"  # made first: it owns the others
    # absent, or NODE: the node's, as before
    for req in (_request(), _request(pb.UserNamespace(mode=pb.NODE))):
        spec = conv.spec_from_request(req, "r")
        assert spec.modes.user is Mode.NODE and spec.userns is None
        assert "user" not in spec.modes.owned()


def test_annotation_asks_tether_to_allocate() -> None:
    spec = conv.spec_from_request(_request(annotations={conv.USERNS_ANNOTATION: "auto"}), "r")
    assert spec.modes.user is Mode.POD and spec.userns is None and spec.userns_auto
    # the kubelet's own options win over the annotation
    spec = conv.spec_from_request(_request(pb.UserNamespace(mode=pb.NODE),
                                           {conv.USERNS_ANNOTATION: "auto"}), "r")
    assert spec.modes.user is Mode.NODE and not spec.userns_auto


F = r"config\.linux\.security_context\.namespace_options"


@pytest.mark.parametrize(("req", "field"), [
    # critest's four refusals
    (_request(pb.UserNamespace(mode=pb.POD, uids=M * 2, gids=M * 2)),
     rf"{F}\.userns_options\.uids: exactly one mapping"),
    (_request(pb.UserNamespace(mode=pb.POD, uids=[pb.IDMapping(container_id=1, host_id=1000,
                                                               length=10)], gids=M)),
     rf"{F}\.userns_options\.uids\[0\]\.container_id: 1: must be 0"),
    (_request(pb.UserNamespace(mode=pb.CONTAINER)), rf"{F}\.userns_options\.mode: CONTAINER"),
    (_request(pb.UserNamespace(mode=pb.TARGET)), rf"{F}\.userns_options\.mode: TARGET"),
    # the node's root, ids past uid_t, nothing mapped, NODE with mappings
    (_request(pb.UserNamespace(mode=pb.POD, uids=M, gids=[pb.IDMapping(length=10)])),
     rf"{F}\.userns_options\.gids\[0\]\.host_id: 0"),
    (_request(pb.UserNamespace(mode=pb.POD, uids=[pb.IDMapping(host_id=2**32 - 10,
                                                               length=100)], gids=M)),
     "go past the largest id"),
    (_request(pb.UserNamespace(mode=pb.POD, uids=[pb.IDMapping(host_id=5)], gids=M)),
     r"uids\[0\]\.length: 0: must be at least 65536"),
    # a container could not start: the runtime's /dev/pts wants gid 5
    (_request(pb.UserNamespace(mode=pb.POD, uids=M, gids=[pb.IDMapping(host_id=5,
                                                                       length=5)])),
     r"gids\[0\]\.length: 5: must be at least 65536"),
    (_request(pb.UserNamespace(mode=pb.POD)), r"uids: exactly one mapping .*got 0"),
    (_request(pb.UserNamespace(mode=pb.NODE, uids=M)), "mappings need mode POD"),
    # the node's namespaces belong to the node's user namespace
    (_request(pb.UserNamespace(mode=pb.POD, uids=M, gids=M), network=pb.NODE),
     rf"{F}\.network: NODE cannot go with a user namespace"),
    (_request(pb.UserNamespace(mode=pb.POD, uids=M, gids=M), pid=pb.NODE), rf"{F}\.pid: NODE"),
    (_request(annotations={conv.USERNS_ANNOTATION: "auto"}, ipc=pb.NODE), rf"{F}\.ipc: NODE"),
    (_request(annotations={conv.USERNS_ANNOTATION: "yes"}),
     r"config\.annotations\['io\.tether\.userns-mode'\]: 'yes'"),
])
def test_refused(req: pb.RunPodSandboxRequest, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        conv.spec_from_request(req, "r")


def test_allocate_takes_the_first_free_block() -> None:
    auto = AutoRange(first=1 << 20, size=65536, count=3)
    a = userns.allocate(auto, [])
    assert a.uids == a.gids == (IDMapping(0, 1 << 20, 65536),) and a.auto
    # a block overlapped by any used range (a kubelet's too) is skipped
    b = userns.allocate(auto, [(0, 65536), ((1 << 20) + 100, (1 << 20) + 200)])
    assert b.uids[0].host_id == (1 << 20) + 65536
    c = userns.allocate(auto, [*a.host_ranges(), *b.host_ranges()])
    assert c.uids[0].host_id == (1 << 20) + 2 * 65536
    with pytest.raises(ResourceExhausted, match="no free block of 65536 ids"):
        userns.allocate(auto, [*a.host_ranges(), *b.host_ranges(), *c.host_ranges()])
    # a freed block is taken again
    assert userns.allocate(auto, [*a.host_ranges(), *c.host_ranges()]) == b


def test_user_namespace_round_trip() -> None:
    ns = UserNamespace((IDMapping(0, 5000, 10),), (IDMapping(0, 6000, 10),), auto=True)
    assert UserNamespace.from_dict(ns.to_dict()) == ns
    assert ns.root() == (5000, 6000)
    assert ns.host_ranges() == [(5000, 5010), (6000, 6010)]
    assert IDMapping(0, 5000, 10).line() == "0 5000 10"


def test_pause_holder_enters_the_pods_user_namespace() -> None:
    pins = {"user": "/u", "net": "/n", "ipc": "/i", "uts": "/t", "pid": "/p"}
    argv = pauseholder.command("/usr/bin/catatonit", pins, ["/cg/cgroup.procs"])
    i = argv.index("nsenter")
    # nsenter becomes the namespace's root, then unshare makes the others inside it, unpinned
    # (the daemon pins them: unshare's pinning child would lack the right to mount)
    assert argv[i:i + 9] == ["nsenter", "--user=/u", "--", "unshare", "--net", "--ipc",
                             "--uts", "--pid", "--fork"]
    assert not any(a.startswith(("--net=", "--pid=")) for a in argv)
    assert argv[-2:] == ["/usr/bin/catatonit", "-P"]
    assert "nsenter" not in pauseholder.command("/c", {"net": "/n"}, [])


def test_spec_joins_the_pods_user_namespace_with_its_mappings() -> None:
    from tests.unit.test_oci_spec import POD, gen

    m = (IDMapping(0, 300000, 65536),)
    spec: dict[str, Any] = gen(pod=dataclasses.replace(
        POD, userns_path="/run/ns/user/p", uid_mappings=m, gid_mappings=m))
    assert spec["linux"]["namespaces"][0] == {"type": "user", "path": "/run/ns/user/p"}
    # runc 1.1 wants the mappings even when it joins the namespace by path
    assert spec["linux"]["uidMappings"] == spec["linux"]["gidMappings"] == [
        {"containerID": 0, "hostID": 300000, "size": 65536}]
    plain = gen()
    assert "uidMappings" not in plain["linux"]
    assert all(n["type"] != "user" for n in plain["linux"]["namespaces"])


def test_a_container_user_outside_the_pods_map_is_refused() -> None:
    from tests.unit.test_oci_spec import POD, cfg, gen

    def asking(user: int, group: int | None = None, groups: tuple[int, ...] = ()) -> Any:
        sc = pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=user),
                                              supplemental_groups=list(groups))
        if group is not None:
            sc.run_as_group.value = group
        return cfg(linux=pb.LinuxContainerConfig(security_context=sc))

    m = (IDMapping(0, 300000, 65536),)
    pod = dataclasses.replace(POD, userns_path="/run/ns/user/p", uid_mappings=m,
                              gid_mappings=m)
    assert gen(asking(65535), pod=pod)
    for config, field in ((asking(65536), "run_as_user: id 65536"),
                          (asking(1, 70000), "run_as_group: id 70000"),
                          (asking(1, groups=(5, 100000)), "supplemental_groups: id 100000")):
        with pytest.raises(InvalidArgument, match=field):
            gen(config, pod=pod)
    # without a user namespace of its own any id goes, as before
    assert gen(asking(70000))
