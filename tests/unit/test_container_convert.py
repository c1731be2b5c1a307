"""shim/rpc/container_convert.py: CreateContainer's config into a ContainerSpec (the refusals
name the CRI field), and back: ContainerStatus shows the mounts as they were asked."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from shim.containers.types import ContainerDetails
from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.oci.types import PidMode, Propagation, SecurityProfile
from shim.rpc.container_convert import container_spec, resources, to_status
from shim.store import ContainerRecord

pytestmark = pytest.mark.unit


def cfg(**kw: object) -> pb.ContainerConfig:
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app", attempt=2),
                              image=pb.ImageSpec(image="busybox"), **kw)  # type: ignore[arg-type]


def pod(privileged: bool = False) -> pb.PodSandboxConfig:
    s = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web", namespace="ns", uid="u"))
    s.linux.security_context.privileged = privileged
    return s


MOUNTS = [
    pb.Mount(container_path="/data", host_path="/h/data", readonly=True, selinux_relabel=True,
             propagation=pb.PROPAGATION_HOST_TO_CONTAINER, mount_options=["noatime"]),
    pb.Mount(container_path="/ids", host_path="/h/ids",
             uidMappings=[pb.IDMapping(container_id=0, host_id=100000, length=65536)],
             gidMappings=[pb.IDMapping(container_id=0, host_id=100000, length=65536)]),
    pb.Mount(container_path="/vol", readonly=True, image_sub_path="sub",
             image=pb.ImageSpec(image="r.io/data:1", annotations={"a": "b"})),
]


def test_spec_from_a_config() -> None:
    c = cfg(command=["/bin/sh"], args=["-c", "true"], working_dir="/w", tty=True,
            envs=[pb.KeyValue(key="A", value="é".encode())], mounts=MOUNTS,
            devices=[pb.Device(host_path="/dev/fuse", container_path="/dev/fuse")],
            labels={"l": "1"}, log_path="app/0.log", stop_signal=pb.SIGNAL_SIGUSR1)
    sc = c.linux.security_context
    sc.namespace_options.pid = pb.TARGET
    sc.namespace_options.target_id = "other"
    sc.run_as_group.value = 0
    sc.run_as_username = "alice"
    sc.supplemental_groups_policy = pb.Strict
    sc.apparmor_profile = "localhost/prof"
    c.linux.resources.hugepage_limits.add(page_size="2MB", limit=4096)
    p = pod()
    p.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    s = container_spec(c, p)
    assert (s.name, s.attempt, s.image, s.command, s.args) == \
        ("app", 2, "busybox", ("/bin/sh",), ("-c", "true"))
    assert s.envs == (("A", "é"),) and s.stop_signal == "SIGUSR1" and s.tty
    assert s.mounts[0].propagation is Propagation.HOST_TO_CONTAINER
    assert s.mounts[1].uid_mappings[0].host_id == 100000
    assert s.mounts[2].image is not None and s.mounts[2].image.image == "r.io/data:1"
    sec = s.security
    assert (sec.pid, sec.target_id) == (PidMode.TARGET, "other")
    assert (sec.run_as_user, sec.run_as_group, sec.supplemental_groups_strict) == \
        (None, 0, True)
    # the pod's seccomp, as the container names none; the container's own AppArmor
    assert sec.seccomp == SecurityProfile("runtime", "",
                                          "pod linux.security_context.seccomp")
    assert sec.apparmor == SecurityProfile("localhost", "prof",
                                           "linux.security_context.apparmor_profile")
    assert s.resources.hugepage_limits[0].page_size == "2MB"
    assert (s.pod.name, s.pod.namespace, s.pod.uid) == ("web", "ns", "u")
    assert container_spec(cfg(), pod()).stop_signal == ""  # the image's, else SIGTERM


@pytest.mark.parametrize(("c", "p", "field"), [
    (pb.ContainerConfig(image=pb.ImageSpec(image="x")), pod(), "config.metadata.name"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="a")), pod(), "config.image.image"),
    (cfg(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        privileged=True))), pod(), "linux.security_context.privileged: the pod is not"),
    (cfg(working_dir="rel"), pod(), "working_dir 'rel'"),
    (cfg(envs=[pb.KeyValue(key="A", value=b"\xff")]), pod(), "envs[0].value (A): not UTF-8"),
    (cfg(mounts=[pb.Mount(container_path="/x", host_path="/h", propagation=9)]), pod(),
     "mounts[0].propagation: unknown value 9"),
    (cfg(mounts=[pb.Mount(container_path="/v", host_path="/h", readonly=True,
                          image=pb.ImageSpec(image="i"))]), pod(),
     "mounts[0]: an image volume has no host_path"),
    (cfg(mounts=[pb.Mount(container_path="/v", image=pb.ImageSpec(image="i"))]), pod(),
     "mounts[0].readonly: an image volume is read-only"),
    (cfg(mounts=[pb.Mount(container_path="/v", readonly=True, image_sub_path="../x",
                          image=pb.ImageSpec(image="i"))]), pod(),
     "mounts[0].image_sub_path '../x': must be a relative path"),
    (cfg(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(pid=7)))), pod(),
     "linux.security_context.namespace_options.pid: unknown mode 7"),
    (cfg(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost)))), pod(),
     "linux.security_context.seccomp.localhost_ref: empty"),
    (cfg(stop_signal=999), pod(), "config.stop_signal: unknown value 999"),
])
def test_refusals_name_the_field(c: pb.ContainerConfig, p: pb.PodSandboxConfig,
                                 field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        container_spec(c, p)
    assert field in e.value.message


def test_a_pods_bad_profile_matters_only_when_the_container_names_none() -> None:
    p = pod()
    p.linux.security_context.seccomp_profile_path = "bogus"
    c = cfg()
    c.linux.security_context.seccomp.profile_type = pb.SecurityProfile.Unconfined
    assert container_spec(c, p).security.seccomp.kind == "unconfined"
    with pytest.raises(InvalidArgument, match=r"pod linux\.security_context\.seccomp_profile_path"):
        container_spec(cfg(), p)


def _status_mounts(details: ContainerDetails) -> list[pb.Mount]:
    rec = ContainerRecord(id="c", details=details).copy()  # as the store keeps it
    return list(to_status(rec).mounts)


def test_status_shows_the_mounts_as_asked() -> None:
    s = container_spec(cfg(mounts=MOUNTS), pod())
    assert _status_mounts(ContainerDetails(mounts=list(s.mounts))) == MOUNTS
    # a record written before the typed spec: the CRI message's JSON
    old = {"mounts": [json_format.MessageToDict(m, preserving_proto_field_name=True)
                      for m in MOUNTS]}
    assert _status_mounts(ContainerDetails.from_dict(json.loads(json.dumps(old)))) == MOUNTS


def test_privilege_of_records_of_older_versions() -> None:
    c = pb.ContainerConfig()
    c.linux.security_context.privileged = True
    old = {"config_json": json_format.MessageToJson(c)}
    assert ContainerDetails.from_dict(old).privileged
    assert not ContainerDetails.from_dict({"config_json": "{}"}).privileged


def test_update_resources() -> None:
    r = resources(pb.LinuxContainerResources(cpu_quota=50000, unified={"memory.high": "1"}))
    assert (r.cpu_quota, r.unified) == (50000, {"memory.high": "1"})
