"""Checks on the CRI v1 API definitions and the generated bindings in shim.cri.

Both shim.cri.api_pb2 and the wheel's cri_api.v1.api_pb2 define package
runtime.v1, so importing both into one process clashes in the default
descriptor pool. Every comparison therefore runs each side in its own
subprocess and exchanges JSON (or hex-encoded bytes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tools" / "gen_proto.py"
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")
OURS = "shim.cri.api_pb2"
WHEEL = "cri_api.v1.api_pb2"

# FieldDescriptor.TYPE_STRING / TYPE_BYTES: both length-delimited on the wire.
TYPE_STRING, TYPE_BYTES = 9, 12
# Type changes upstream made after the wheel was cut: (message, field) -> (wheel type, our type).
# KeyValue.value became bytes so env values can carry non-UTF-8 data; same wire type.
KNOWN_TYPE_CHANGES = {("runtime.v1.KeyValue", "value"): (TYPE_STRING, TYPE_BYTES)}
# Enum values upstream renamed (numbers unchanged) after the wheel: enum -> prefix added.
KNOWN_ENUM_PREFIXES = {"runtime.v1.Signal": "SIGNAL_"}

RUNTIME_RPCS = {
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "StreamPodSandboxes", "CreateContainer", "StartContainer",
    "StopContainer", "RemoveContainer", "ListContainers", "StreamContainers",
    "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog", "ExecSync", "Exec",
    "Attach", "PortForward", "ContainerStats", "ListContainerStats", "StreamContainerStats",
    "PodSandboxStats", "ListPodSandboxStats", "StreamPodSandboxStats", "UpdateRuntimeConfig",
    "Status", "CheckpointContainer", "CheckpointPod", "RestorePod", "GetContainerEvents",
    "ListMetricDescriptors", "ListPodSandboxMetrics", "StreamPodSandboxMetrics",
    "RuntimeConfig", "UpdatePodSandboxResources",
}  # fmt: skip
IMAGE_RPCS = {
    "ListImages", "StreamImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo",
}  # fmt: skip
SERVER_STREAMING = {
    "StreamPodSandboxes", "StreamContainers", "StreamContainerStats", "StreamPodSandboxStats",
    "GetContainerEvents", "StreamPodSandboxMetrics", "StreamImages",
}  # fmt: skip

# Walks a module's FileDescriptor and prints it as JSON. argv[1]: module name.
WALKER = r"""
import importlib, json, sys
fd = importlib.import_module(sys.argv[1]).DESCRIPTOR

def label(f):
    try:
        return "repeated" if f.is_repeated else ("required" if f.is_required else "optional")
    except AttributeError:  # protobuf < 6
        return {1: "optional", 2: "required", 3: "repeated"}[f.label]

out = {"package": fd.package, "messages": {}, "enums": {}, "services": {}}

def walk_enum(e):
    out["enums"][e.full_name] = {v.name: v.number for v in e.values}

def walk_message(m):
    fields = {}
    for f in m.fields:
        ref = f.message_type or f.enum_type
        fields[f.name] = {
            "number": f.number, "type": f.type, "label": label(f),
            "type_name": ref.full_name if ref else "",
            "oneof": f.containing_oneof.name if f.containing_oneof else None,
        }
    out["messages"][m.full_name] = fields
    for n in m.nested_types:
        walk_message(n)
    for e in m.enum_types:
        walk_enum(e)

for m in fd.message_types_by_name.values():
    walk_message(m)
for e in fd.enum_types_by_name.values():
    walk_enum(e)
for s in fd.services_by_name.values():
    out["services"][s.full_name] = {
        x.name: {
            "input": x.input_type.full_name, "output": x.output_type.full_name,
            "client_streaming": x.client_streaming, "server_streaming": x.server_streaming,
        }
        for x in s.methods
    }
json.dump(out, sys.stdout, sort_keys=True)
"""

# Builds a RunPodSandboxRequest with our classes; prints its bytes as hex.
BUILD_OURS = r"""
import sys
from shim.cri import api_pb2 as pb
req = pb.RunPodSandboxRequest(
    runtime_handler="runc",
    config=pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="web", uid="uid-1", namespace="default", attempt=2),
        hostname="web-0",
        log_directory="/var/log/pods/default_web_uid-1",
        dns_config=pb.DNSConfig(
            servers=["10.96.0.10"], searches=["svc.cluster.local"], options=["ndots:5"]
        ),
        port_mappings=[
            pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1")
        ],
        labels={"app": "web"},
        annotations={"note": "ü"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/burstable/poduid-1",
            sysctls={"net.ipv4.ip_forward": "1"},
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER),
                run_as_user=pb.Int64Value(value=1000),
                supplemental_groups=[5, 6],
                seccomp=pb.SecurityProfile(
                    profile_type=pb.SecurityProfile.Localhost, localhost_ref="profiles/a.json"
                ),
            ),
            overhead=pb.LinuxContainerResources(
                cpu_quota=50000,
                memory_limit_in_bytes=1 << 30,
                hugepage_limits=[pb.HugepageLimit(page_size="2MB", limit=1 << 21)],
                unified={"memory.high": "max"},
            ),
        ),
    ),
)
sys.stdout.write(req.SerializeToString(deterministic=True).hex())
"""

# Parses hex bytes from stdin with the wheel's classes; prints a dict and the re-encoding.
PARSE_WHEEL = r"""
import json, sys
from google.protobuf import json_format
from cri_api.v1 import api_pb2 as pb
req = pb.RunPodSandboxRequest()
req.ParseFromString(bytes.fromhex(sys.stdin.read()))
json.dump({
    "msg": json_format.MessageToDict(req, preserving_proto_field_name=True),
    "hex": req.SerializeToString(deterministic=True).hex(),
}, sys.stdout)
"""


def _python(code: str, *args: str, stdin: str | None = None) -> str:
    """Run a snippet in a fresh interpreter with the repo importable; return stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"snippet failed:\n{proc.stderr}"
    return proc.stdout


def _require_wheel() -> None:
    if importlib.util.find_spec("cri_api") is None:
        pytest.skip("container-runtime-interface-api wheel not installed")


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_python(WALKER, OURS))
    return result


@pytest.fixture(scope="module")
def wheel() -> dict[str, Any]:
    _require_wheel()
    result: dict[str, Any] = json.loads(_python(WALKER, WHEEL))
    return result


def test_regeneration_has_no_diff(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    stale = [
        name
        for name in GENERATED
        if (tmp_path / name).read_bytes() != (ROOT / "shim" / "cri" / name).read_bytes()
    ]
    assert not stale, (
        f"{stale} differ from a fresh regeneration: run `python tools/gen_proto.py` "
        "(output depends on the installed grpcio-tools version)"
    )


def test_services_have_all_rpcs_with_streaming_flags(ours: dict[str, Any]) -> None:
    assert ours["package"] == "runtime.v1"
    services = ours["services"]
    assert set(services) == {"runtime.v1.RuntimeService", "runtime.v1.ImageService"}
    runtime, image = services["runtime.v1.RuntimeService"], services["runtime.v1.ImageService"]
    assert set(runtime) == RUNTIME_RPCS
    assert set(image) == IMAGE_RPCS
    assert len(runtime) + len(image) == 43
    for name, rpc in {**runtime, **image}.items():
        assert rpc["server_streaming"] is (name in SERVER_STREAMING), name
        assert rpc["client_streaming"] is False, name
        for side in ("input", "output"):
            assert rpc[side] in ours["messages"], (name, rpc[side])


def test_wire_compatible_with_wheel(ours: dict[str, Any], wheel: dict[str, Any]) -> None:
    assert wheel["package"] == ours["package"] == "runtime.v1"
    problems: list[str] = []

    common_msgs = sorted(set(ours["messages"]) & set(wheel["messages"]))
    assert len(common_msgs) >= 150, f"only {len(common_msgs)} messages in common"
    checked_fields = 0
    for msg in common_msgs:
        mine, theirs = ours["messages"][msg], wheel["messages"][msg]
        for field in sorted(set(mine) & set(theirs)):
            a, b = mine[field], theirs[field]
            checked_fields += 1
            if KNOWN_TYPE_CHANGES.get((msg, field)) == (b["type"], a["type"]):
                a = {**a, "type": b["type"]}
            if a != b:
                problems.append(f"field {msg}.{field}: ours {a} != wheel {b}")
        # A field number used on both sides must carry the same wire type.
        by_num = {f["number"]: f for f in theirs.values()}
        for field, a in mine.items():
            b = by_num.get(a["number"])
            if b is not None and b["type"] != a["type"] and (msg, field) not in KNOWN_TYPE_CHANGES:
                problems.append(f"field {msg} #{a['number']}: type {a['type']} != {b['type']}")
    assert checked_fields >= 500, f"only {checked_fields} fields compared"

    common_enums = set(ours["enums"]) & set(wheel["enums"])
    assert len(common_enums) >= 9
    for enum in sorted(common_enums):
        mine, theirs = ours["enums"][enum], _wheel_enum(wheel, enum)
        assert set(mine) & set(theirs), f"enum {enum}: no value names in common"
        for value in sorted(set(mine) & set(theirs)):
            if mine[value] != theirs[value]:
                problems.append(f"enum {enum}.{value}: {mine[value]} != {theirs[value]}")
        # Renamed values still have to keep the same set of numbers.
        if set(theirs.values()) - set(mine.values()):
            problems.append(f"enum {enum}: wheel numbers missing in ours")

    common_rpcs = 0
    for svc in sorted(set(ours["services"]) & set(wheel["services"])):
        mine, theirs = ours["services"][svc], wheel["services"][svc]
        for rpc in sorted(set(mine) & set(theirs)):
            common_rpcs += 1
            if mine[rpc] != theirs[rpc]:
                problems.append(f"rpc {svc}/{rpc}: ours {mine[rpc]} != wheel {theirs[rpc]}")
    assert common_rpcs >= 30, f"only {common_rpcs} RPCs in common"

    assert not problems, "\n".join(problems)
    _report_newer(ours, wheel)


def _wheel_enum(wheel: dict[str, Any], enum: str) -> dict[str, int]:
    """The wheel's values of an enum, with names mapped onto upstream's renames."""
    prefix = KNOWN_ENUM_PREFIXES.get(enum, "")
    return {
        name if name.startswith(prefix) else prefix + name: number
        for name, number in wheel["enums"][enum].items()
    }


def _report_newer(ours: dict[str, Any], wheel: dict[str, Any]) -> None:
    """Print (and warn about) what our newer definitions have beyond the wheel."""
    lines: list[str] = []
    for svc, rpcs in sorted(ours["services"].items()):
        extra = sorted(set(rpcs) - set(wheel["services"].get(svc, {})))
        if extra:
            lines.append(f"{svc}: new RPCs {extra}")
    extra_msgs = sorted(set(ours["messages"]) - set(wheel["messages"]))
    if extra_msgs:
        lines.append(f"new messages: {extra_msgs}")
    for msg in sorted(set(ours["messages"]) & set(wheel["messages"])):
        extra = sorted(set(ours["messages"][msg]) - set(wheel["messages"][msg]))
        if extra:
            lines.append(f"{msg}: new fields {extra}")
    for enum in sorted(set(ours["enums"]) & set(wheel["enums"])):
        mine, theirs = ours["enums"][enum], wheel["enums"][enum]
        renamed = sorted(set(mine) - set(theirs))
        if renamed:
            lines.append(f"{enum}: {len(renamed)} value names not in the wheel, e.g. {renamed[:3]}")
    for (msg, field), (old, new) in KNOWN_TYPE_CHANGES.items():
        if wheel["messages"].get(msg, {}).get(field, {}).get("type") == old:
            lines.append(f"{msg}.{field}: type {old} in the wheel, {new} here (same wire type)")
    if lines:
        print("CRI v1 definitions beyond the wheel:\n  " + "\n  ".join(lines))
        warnings.warn(
            f"shim.cri is newer than the cri_api wheel ({len(lines)} differences, "
            "see captured stdout)",
            stacklevel=2,
        )


def test_round_trip_into_wheel_classes() -> None:
    _require_wheel()
    encoded = _python(BUILD_OURS)
    parsed = json.loads(_python(PARSE_WHEEL, stdin=encoded))
    # Every field we set is known to the wheel, so re-encoding is byte-identical.
    assert parsed["hex"] == encoded

    msg = parsed["msg"]
    assert msg["runtime_handler"] == "runc"
    config = msg["config"]
    assert config["metadata"] == {
        "name": "web",
        "uid": "uid-1",
        "namespace": "default",
        "attempt": 2,
    }
    assert config["hostname"] == "web-0"
    assert config["dns_config"]["options"] == ["ndots:5"]
    assert config["port_mappings"] == [
        {"protocol": "UDP", "container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1"}
    ]
    assert config["labels"] == {"app": "web"}
    assert config["annotations"] == {"note": "ü"}
    linux = config["linux"]
    assert linux["sysctls"] == {"net.ipv4.ip_forward": "1"}
    sec = linux["security_context"]
    assert sec["namespace_options"] == {"network": "NODE", "pid": "CONTAINER"}
    assert sec["run_as_user"] == {"value": "1000"}
    assert sec["supplemental_groups"] == ["5", "6"]
    assert sec["seccomp"] == {"profile_type": "Localhost", "localhost_ref": "profiles/a.json"}
    overhead = linux["overhead"]
    assert overhead["cpu_quota"] == "50000"
    assert overhead["memory_limit_in_bytes"] == str(1 << 30)
    assert overhead["hugepage_limits"] == [{"page_size": "2MB", "limit": str(1 << 21)}]
    assert overhead["unified"] == {"memory.high": "max"}
