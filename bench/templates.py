"""Pod and container config templates (crictl's JSON format) and the bench settings.

Templates are JSON objects in the CRI's JSON mapping (the format of ``crictl runp`` /
``crictl create`` config files; field names as in api.proto or lowerCamelCase). Every
string may use these placeholders, replaced for each pod:

    {name}     pod name, unique per pod ("bench-<run>-<runtime>-<index>")
    {uid}      pod uid (random)
    {index}    pod number within the workload
    {run_id}   id of this bench run (also the value of the "tether-bench" label)
    {log_dir}  the pod's log directory (created by the tool, removed after the pod)
    {image}    the pod image (--image)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from shim.cri import api_pb2 as pb

BENCH_LABEL = "tether-bench"
DEFAULT_IMAGE = "127.0.0.1:5000/busybox:latest"

_NS_OPTIONS = {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}

DEFAULT_POD: dict[str, Any] = {
    "metadata": {"name": "{name}", "namespace": "tether-bench", "uid": "{uid}", "attempt": 0},
    "hostname": "{name}",
    "log_directory": "{log_dir}",
    "labels": {BENCH_LABEL: "{run_id}"},
    "linux": {
        # what the kubelet's cgroupfs driver gives a BestEffort pod, under our own parent
        "cgroup_parent": "/tether-bench/pod{uid}",
        "security_context": {"namespace_options": dict(_NS_OPTIONS)},
    },
}

DEFAULT_CONTAINER: dict[str, Any] = {
    "metadata": {"name": "sleep", "attempt": 0},
    "image": {"image": "{image}"},
    "command": ["sleep", "3600"],
    "log_path": "sleep/0.log",
    "labels": {BENCH_LABEL: "{run_id}"},
    "linux": {"security_context": {"namespace_options": dict(_NS_OPTIONS)}},
}


def substitute(obj: Any, values: dict[str, str]) -> Any:
    """Replace ``{key}`` placeholders in every string of a JSON-like structure."""
    if isinstance(obj, str):
        for k, v in values.items():
            obj = obj.replace("{" + k + "}", v)
        return obj
    if isinstance(obj, list):
        return [substitute(x, values) for x in obj]
    if isinstance(obj, dict):
        return {substitute(k, values): substitute(v, values) for k, v in obj.items()}
    return obj


def load_template(path: str | None, default: dict[str, Any]) -> dict[str, Any]:
    if not path:
        return copy.deepcopy(default)
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object is needed")
    return data


def pod_config(template: dict[str, Any], values: dict[str, str]) -> pb.PodSandboxConfig:
    msg = pb.PodSandboxConfig()
    json_format.ParseDict(substitute(template, values), msg)
    return msg


def container_config(template: dict[str, Any], values: dict[str, str]) -> pb.ContainerConfig:
    msg = pb.ContainerConfig()
    json_format.ParseDict(substitute(template, values), msg)
    return msg


@dataclass
class BenchConfig:
    image: str = DEFAULT_IMAGE
    pull_image: str = ""  # image workload; "" = image
    handler: str = ""  # "" = the runtime's default handler
    pods: int = 20  # lifecycle N
    workers: int = 4  # concurrency K
    concurrency_pods: int = 16
    concurrency_rounds: int = 2
    density: int = 10  # M
    density_rounds: int = 1
    list_iterations: int = 50
    basic_iterations: int = 20
    image_rounds: int = 3
    image_fill: int = 0  # image workload: distinct small images pulled first (bench.imagefill)
    image_fill_prefix: str = ""  # their references: <prefix>000:latest ...
    stream_rounds: int = 3  # streaming workload
    stream_iterations: int = 20  # crictl exec echo per round
    stream_mb: int = 64  # the file fetched through port-forward
    stream_parallel: int = 10  # clients at once through one forward
    settle_seconds: float = 1.0
    stop_timeout: int = 0
    warmup: int = 1
    containers: bool = True  # False: pods without containers (every pod workload)
    rpc_timeout: float = 120.0
    run_id: str = ""
    log_root: str = "/tmp/tether-bench-logs"
    pod_template: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_POD))
    container_template: dict[str, Any] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_CONTAINER)
    )

    @property
    def pull_ref(self) -> str:
        return self.pull_image or self.image

    def public(self) -> dict[str, Any]:
        """The settings as they go into the JSON report."""
        return {
            "image": self.image,
            "pull_image": self.pull_ref,
            "handler": self.handler,
            "lifecycle_pods": self.pods,
            "concurrency_workers": self.workers,
            "concurrency_pods": self.concurrency_pods,
            "concurrency_rounds": self.concurrency_rounds,
            "density_pods": self.density,
            "density_rounds": self.density_rounds,
            "list_iterations": self.list_iterations,
            "basic_iterations": self.basic_iterations,
            "image_rounds": self.image_rounds,
            "image_fill": self.image_fill,
            "image_fill_prefix": self.image_fill_prefix,
            "stream_rounds": self.stream_rounds,
            "stream_iterations": self.stream_iterations,
            "stream_mb": self.stream_mb,
            "stream_parallel": self.stream_parallel,
            "settle_seconds": self.settle_seconds,
            "stop_timeout": self.stop_timeout,
            "warmup_pods": self.warmup,
            "containers": self.containers,
            "run_id": self.run_id,
            "pod_template": self.pod_template,
            "container_template": self.container_template,
        }
