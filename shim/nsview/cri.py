"""The daemon's view over its CRI socket, as typed facts: the client side of the RPC edge
(protobuf stops here, as it does in shim/rpc on the server side)."""

from __future__ import annotations

import contextlib
import json
import socket as socketmod
from typing import Any

import grpc

from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc
from shim.nsview.model import ContainerFacts, PodFacts, spec_namespaces

_STATES = {pb.CONTAINER_CREATED: "created", pb.CONTAINER_RUNNING: "running",
           pb.CONTAINER_EXITED: "exited", pb.CONTAINER_UNKNOWN: "unknown"}


class Unreachable(Exception):
    """Nothing answers on the socket (the daemon is down)."""


def _info(resp: Any) -> dict[str, Any]:
    try:
        info = json.loads(resp.info.get("info", "{}"))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _refused(path: str) -> str | None:
    """Why nothing can answer on ``path`` (no file, a stale socket a killed daemon left), at
    once rather than after gRPC's connect timeout; None when something listens."""
    s = socketmod.socket(socketmod.AF_UNIX)
    try:
        s.connect(path)
        return None
    except OSError as e:
        return f"nothing answers on {path} ({e.strerror})"
    finally:
        with contextlib.suppress(OSError):
            s.close()


def read(socket: str, timeout: float = 10.0) -> tuple[list[PodFacts], list[ContainerFacts]]:
    why = _refused(socket)
    if why:
        raise Unreachable(why)
    channel = grpc.insecure_channel(f"unix://{socket}",
                                    options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=min(timeout, 3.0))
        except grpc.FutureTimeoutError:
            raise Unreachable(f"nothing answers on {socket}") from None
        rt = api_pb2_grpc.RuntimeServiceStub(channel)
        pods = []
        for item in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=timeout).items:
            try:
                st = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
                    pod_sandbox_id=item.id, verbose=True), timeout=timeout)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    continue  # removed since the list
                raise
            info = _info(st)
            nss = info.get("namespaces", {})
            pods.append(PodFacts(
                id=item.id, name=item.metadata.name, namespace=item.metadata.namespace,
                state=str(info.get("state", "")), pid=int(info.get("pid") or 0),
                modes={k: v.get("mode", "") for k, v in nss.items()},
                recorded={k: v["inode"] for k, v in nss.items()
                          if v.get("mode") == "POD" and v.get("inode")},
                privileged=bool(info.get("privileged")),
                host_ports=tuple(p["host_port"] for p in info.get("portMappings", [])
                                 if p.get("host_port")),
            ))
        containers = []
        for c in rt.ListContainers(pb.ListContainersRequest(), timeout=timeout).containers:
            try:
                cs = rt.ContainerStatus(pb.ContainerStatusRequest(
                    container_id=c.id, verbose=True), timeout=timeout)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                raise
            info = _info(cs)
            containers.append(ContainerFacts(
                id=c.id, pod_id=c.pod_sandbox_id, name=c.metadata.name,
                state=_STATES.get(c.state, "unknown"), pid=int(info.get("pid") or 0),
                privileged=bool(info.get("privileged")),
                spec_namespaces=spec_namespaces(info.get("runtimeSpec")),
            ))
        return pods, containers
    finally:
        channel.close()
