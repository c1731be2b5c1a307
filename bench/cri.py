"""A thin, timed CRI client over the generated v1 stubs (shim.cri).

Every call goes through :meth:`CriClient.call`, which measures the RPC's wall-clock time
(``time.perf_counter`` around the blocking stub call) and turns gRPC errors into
:class:`Unsupported` (status UNIMPLEMENTED: the runtime does not have that RPC yet) or
:class:`CriError` (anything else).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import grpc

from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc

# RPC name -> service ("runtime" or "image")
_IMAGE_RPCS = frozenset({"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"})


class CriError(Exception):
    """A CRI call failed (other than UNIMPLEMENTED)."""

    def __init__(self, method: str, code: grpc.StatusCode | None, detail: str) -> None:
        self.method = method
        self.code = code
        self.detail = detail
        name = code.name if code is not None else "ERROR"
        super().__init__(f"{method}: {name}: {detail}")


class Unsupported(CriError):
    """The runtime answered UNIMPLEMENTED."""


def normalize_endpoint(endpoint: str) -> str:
    """``/run/x.sock`` or ``unix:/run/x.sock`` -> ``unix:///run/x.sock``."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("unix:"):
        return "unix://" + endpoint[len("unix:") :]
    if endpoint.startswith("/"):
        return "unix://" + endpoint
    raise ValueError(f"unsupported endpoint {endpoint!r}: give unix:///path/to.sock")


def socket_path(endpoint: str) -> str:
    """The filesystem path of a unix endpoint."""
    return normalize_endpoint(endpoint)[len("unix://") :]


class CriClient:
    def __init__(self, endpoint: str, timeout: float = 120.0) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            self.endpoint,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ],
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def call(self, method: str, request: Any, timeout: float | None = None) -> tuple[Any, float]:
        """(response, seconds). Raises Unsupported or CriError."""
        stub = self.images if method in _IMAGE_RPCS else self.runtime
        fn = getattr(stub, method)
        t0 = time.perf_counter()
        try:
            resp = fn(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            detail = e.details() if hasattr(e, "details") else str(e)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise Unsupported(method, code, detail or "") from None
            raise CriError(method, code, detail or "") from None
        return resp, time.perf_counter() - t0

    # ---------------------------------------------------------------- helpers

    def version(self) -> pb.VersionResponse:
        resp, _ = self.call("Version", pb.VersionRequest(version="0.1.0"))
        return resp

    def image_present(self, ref: str) -> bool:
        resp, _ = self.call("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        return bool(resp.image.id)

    def ensure_image(self, ref: str, sandbox: pb.PodSandboxConfig | None = None) -> float:
        """Pull ``ref`` unless the runtime has it; returns the pull time (0 if present)."""
        if self.image_present(ref):
            return 0.0
        req = pb.PullImageRequest(image=pb.ImageSpec(image=ref), sandbox_config=sandbox)
        _, dt = self.call("PullImage", req)
        return dt

    def container_pid(self, container_id: str) -> int | None:
        """The container's main pid from ContainerStatus verbose info (``info`` JSON)."""
        resp, _ = self.call(
            "ContainerStatus", pb.ContainerStatusRequest(container_id=container_id, verbose=True)
        )
        return _pid_from_info(dict(resp.info))

    def sandbox_pid(self, sandbox_id: str) -> int | None:
        resp, _ = self.call(
            "PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        )
        return _pid_from_info(dict(resp.info))

    def remove_pods(self, label_key: str | None, label_value: str | None = None) -> int:
        """Stop and remove every pod sandbox with the label (any value when None; every
        pod when ``label_key`` is None)."""
        sel = {label_key: label_value} if label_key and label_value is not None else {}
        resp, _ = self.call(
            "ListPodSandbox",
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector=sel)),
        )
        n = 0
        for sb in resp.items:
            if label_key is not None and label_key not in sb.labels:
                continue
            remove_pod(self, sb.id)
            n += 1
        return n


def _pid_from_info(info: dict[str, str]) -> int | None:
    """``pid`` from a verbose status: containerd puts JSON under ``info``; accept a bare
    ``pid`` key too."""
    for key in ("info", "pid"):
        raw = info.get(key)
        if raw is None:
            continue
        try:
            val = json.loads(raw)
        except ValueError:
            continue
        if isinstance(val, dict):
            val = val.get("pid")
        if isinstance(val, int) and val > 0:
            return val
    return None


def remove_pod(client: CriClient, sandbox_id: str) -> None:
    """Best effort: stop and remove the pod's containers, then the pod (untimed)."""
    try:
        resp, _ = client.call(
            "ListContainers",
            pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=sandbox_id)),
        )
        for c in resp.containers:
            for method, req in (
                ("StopContainer", pb.StopContainerRequest(container_id=c.id, timeout=0)),
                ("RemoveContainer", pb.RemoveContainerRequest(container_id=c.id)),
            ):
                with contextlib.suppress(CriError):
                    client.call(method, req)
    except CriError:
        pass
    for method, req in (
        ("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)),
        ("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)),
    ):
        with contextlib.suppress(CriError):
            client.call(method, req)
