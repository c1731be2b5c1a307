"""A property-based fuzzer of every CRI request type against a real daemon.

Requests are generated from the protobuf descriptors themselves (so every message type and
field is covered, new ones included), with hostile values: paths with ``..``, ``//``, NUL
and absolute parts, control characters and newlines, unicode, long strings, boundary and
negative numbers, unknown enum values, deep nesting. After each request: the daemon is alive
and answers Version, the code is one a client may get for bad input (never INTERNAL or
UNKNOWN), the log has no traceback, and after everything it made is removed nothing is left:
no pods, containers, mounts under its dirs, processes, files outside its dirs.

A fixed seed and a bounded number of examples run in the test command; ``make fuzz``
(TETHER_FUZZ_EXAMPLES=N) runs longer, with fresh randomness.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message as pbmessage
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc
from shim.images import snapshots
from tests.integration.images_fixtures import daemon_config
from tests.integration.test_sandbox import Env, start_env, stop_env
from tests.rig.images import ImageRegistry

EXAMPLES = int(os.environ.get("TETHER_FUZZ_EXAMPLES", "300"))
RANDOM = bool(os.environ.get("TETHER_FUZZ_EXAMPLES"))

ALLOWED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# streaming calls that would wait for events forever
SKIP = {"GetContainerEvents"}

HOSTILE_TEXT = st.one_of(
    st.sampled_from([
        "", "/", "..", "../../../../etc/passwd", "/etc/passwd", "//", "a/../../b", ".",
        "\x00", "a\x00b", "\n", "a\nb", "\r\n", "x" * 5000, "é✓💥", "\udcff".encode(
            "utf-8", "surrogatepass").decode("utf-8", "replace"), "net.//.//.//.tmp.x",
        "0-99999", "-1", "99999999999999999999999E", "sha256:" + "0" * 64,
        "127.0.0.1:1/x:y", "localhost/../x", "%s%n", "${PATH}", "; rm -rf /", "*",
    ]),
    st.text(max_size=40),
)
NUMBERS = st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 99]),
                    st.integers(-(2**31), 2**31 - 1))


def _repeated(f: d.FieldDescriptor) -> bool:
    flag = getattr(f, "is_repeated", None)  # protobuf >= 6 (label() is deprecated there)
    return bool(flag) if flag is not None else f.label == d.FieldDescriptor.LABEL_REPEATED


def _field_value(f: d.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = f.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return HOSTILE_TEXT
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]),
                         st.sampled_from([-1, 99, 1000]))
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64,
             d.FieldDescriptor.TYPE_SFIXED64):
        return NUMBERS
    if t == d.FieldDescriptor.TYPE_MESSAGE:
        return message(f.message_type, depth + 1)
    return st.integers(-(2**31), 2**31 - 1)


def message(desc: d.Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of field values for ``desc``, each field present or not."""
    if depth > 4:
        return st.just({})
    fields = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            fields[f.name] = st.dictionaries(_field_value(k, depth), _field_value(v, depth),
                                             max_size=3)
        elif _repeated(f):
            fields[f.name] = st.lists(_field_value(f, depth), max_size=3)
        else:
            fields[f.name] = _field_value(f, depth)
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[pbmessage.Message], values: dict[str, Any]) -> pbmessage.Message:
    msg = cls()
    _fill(msg, values)
    return msg


def _fill(msg: pbmessage.Message, values: dict[str, Any]) -> None:
    for name, v in values.items():
        f = msg.DESCRIPTOR.fields_by_name[name]
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            target = getattr(msg, name)
            vf = f.message_type.fields_by_name["value"]
            for k, item in v.items():
                if vf.message_type is not None:
                    _fill(target[k], item)
                else:
                    target[k] = item
        elif _repeated(f):
            target = getattr(msg, name)
            for item in v:
                if f.message_type is not None:
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif f.message_type is not None:
            _fill(getattr(msg, name), v)
        else:
            setattr(msg, name, v)


def _confine_images(msg: pbmessage.Message) -> None:
    """Every image reference points at a closed loopback port: the fuzzer sends nothing off
    the test namespace's loopback, whatever it generates."""
    for f, value in msg.ListFields():
        if f.message_type is None:
            continue
        items = value.values() if f.message_type.GetOptions().map_entry else (
            value if _repeated(f) else [value])
        for item in items:
            if isinstance(item, pbmessage.Message):
                if item.DESCRIPTOR.name == "ImageSpec" and item.image:
                    item.image = "127.0.0.1:1/fuzz/" + item.image.lstrip("/")
                _confine_images(item)


METHODS = [
    (service, m) for service in ("RuntimeService", "ImageService")
    for m in pb.DESCRIPTOR.services_by_name[service].methods if m.name not in SKIP
]


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory, registry: ImageRegistry
             ) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("fuzz")
    env = start_env(base, extra_config=daemon_config(insecure=[registry.host]))
    env.conflist([env.bridge(), {"type": "loopback"}])
    env.cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(
        image=registry.ref("busybox"))), timeout=120)
    yield env
    stop_env(env)


def _call(env: Env, service: str, m: d.MethodDescriptor, req: pbmessage.Message) -> None:
    stub = (api_pb2_grpc.RuntimeServiceStub(env.cri.channel) if service == "RuntimeService"
            else api_pb2_grpc.ImageServiceStub(env.cri.channel))
    call = getattr(stub, m.name)
    try:
        if m.server_streaming:
            for _ in call(req, timeout=30):
                pass
        else:
            call(req, timeout=30)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, f"{m.name} -> {e.code()}: {e.details()}\n{req}"


def _clean(env: Env) -> None:
    rt = env.cri.runtime
    for c in rt.ListContainers(pb.ListContainersRequest()).containers:
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=60)
    for p in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=60)


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat[stat.rfind(")") + 2:].split()[1])


@pytest.mark.timeout(1200)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM,
          suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
@seed(20261204)
def test_hostile_requests(fuzz_env: Env, data: st.DataObject) -> None:
    service, m = data.draw(st.sampled_from(METHODS), label="method")
    cls = getattr(pb, m.input_type.name)
    req = build(cls, data.draw(message(m.input_type), label="fields"))
    _confine_images(req)
    _call(fuzz_env, service, m, req)
    # alive and answering
    assert fuzz_env.cri.runtime.Version(pb.VersionRequest(), timeout=10).runtime_name
    assert fuzz_env.daemon.proc is not None and fuzz_env.daemon.proc.poll() is None


def test_fuzzing_left_nothing_behind(fuzz_env: Env) -> None:
    """After the examples (same module, so it runs after them): whatever they made, once
    removed, leaves nothing; and no request produced a traceback."""
    _clean(fuzz_env)
    assert "Traceback" not in fuzz_env.daemon.logs()
    assert not Path("/tmp/x").exists()  # where "net.//.//.//.tmp.x" once wrote
    pid = fuzz_env.daemon.proc.pid if fuzz_env.daemon.proc else 0
    kids = [p for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == pid]
    assert kids == [], kids  # no conmon, pause-holder or plugin left running
    root = fuzz_env.daemon.base
    left = snapshots.mounts_under(str(root))
    assert [p for p in left if "/containers/" in p or "/ns/" in p] == []
