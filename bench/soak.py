"""Soak: many bad requests and many pod lifecycles against one daemon, watching its RSS and
open file descriptors before, during and after (the hardening issue's target: RSS back within
5 MiB of its warmed-up value, fds back to their count).

    python -m bench.soak --endpoint unix:///run/tether/tether.sock [--bad 10000] [--pods 1000]

(scripts/soak.sh runs it in the benchmark's network namespace against a fresh daemon.)
The bad requests cycle through the hostile inputs the hardening tests use; each must be
answered with a code a client may get for bad input. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

from bench.cri import CriClient, CriError, socket_path
from bench.procs import pid_listening_on, read_memory
from bench.templates import BenchConfig
from bench.workloads import PodFactory, Target, WorkloadResult, start_pod, stop_pod
from shim.cri import api_pb2 as pb

BAD_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "ALREADY_EXISTS",
             "UNIMPLEMENTED", "UNAVAILABLE"}


def _pod(name: str, **linux: Any) -> pb.PodSandboxConfig:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="soak",
                                                             uid=f"uid-{name}"))
    for k, v in linux.items():
        getattr(cfg.linux, k).update(v)
    return cfg


def bad_requests() -> list[tuple[str, Any]]:
    hostile_dns = _pod("dns")
    hostile_dns.dns_config.searches.append("svc\nnameserver 6.6.6.6")
    ports = _pod("ports")
    ports.port_mappings.extend([pb.PortMapping(container_port=80, host_port=8080),
                                pb.PortMapping(container_port=81, host_port=8080)])
    logdir = _pod("logdir")
    logdir.log_directory = "../../relative"
    return [
        ("RunPodSandbox", pb.RunPodSandboxRequest(
            config=_pod("sysctl", sysctls={"net.//.//.//.tmp.x.victim": "PWNED"}))),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=hostile_dns)),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=ports)),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=logdir)),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=pb.PodSandboxConfig())),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=_pod("h"), runtime_handler="nope")),
        ("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id="0" * 64,
                                                      config=pb.ContainerConfig())),
        ("StartContainer", pb.StartContainerRequest(container_id="nope")),
        ("ExecSync", pb.ExecSyncRequest(container_id="x" * 5000, cmd=["true"])),
        ("ContainerStatus", pb.ContainerStatusRequest(container_id="../../etc")),
        ("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id="\u00e9" * 100)),
        ("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image="127.0.0.1:1/../x"))),
        ("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image="127.0.0.1:1/x:y"),
                                          auth=pb.AuthConfig(registry_token="a\r\nb"))),
        ("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="UPPER/Case"))),
        ("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image="sha256:" + "f" * 64))),
        ("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id="")),
        ("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
            container_id="x", linux=pb.LinuxContainerResources(cpuset_cpus="0-99999"))),
        ("Attach", pb.AttachRequest(container_id="x")),
    ]


def sample(pid: int) -> dict[str, float]:
    mem = read_memory(pid)
    return {"t": time.monotonic(), "rss_mib": (mem.rss_kb / 1024) if mem else -1,
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def run(endpoint: str, bad: int, pods: int, image: str, warm: int) -> dict[str, Any]:
    client = CriClient(endpoint, timeout=60)
    pid = pid_listening_on(socket_path(endpoint))
    if pid is None:
        raise SystemExit(f"no process listens on {endpoint}")
    cfg = BenchConfig(image=image, run_id=f"soak{os.getpid()}", log_root="/tmp/tether-soak-logs")
    target = Target("tether", endpoint, client, daemon_pid=pid)
    client.ensure_image(image)
    res = WorkloadResult()
    factory = PodFactory(cfg, target)
    codes: dict[str, int] = {}
    reqs = bad_requests()

    def lifecycles(n: int) -> None:
        for _ in range(n):
            pod = factory.make()
            start_pod(cfg, target, pod, res, record=False)
            stop_pod(cfg, target, pod, res, record=False)

    def bads(n: int) -> None:
        for i in range(n):
            method, req = reqs[i % len(reqs)]
            try:
                client.call(method, req)
                codes["OK"] = codes.get("OK", 0) + 1
            except CriError as e:
                name = e.code.name if e.code else "ERROR"
                codes[name] = codes.get(name, 0) + 1

    start = sample(pid)
    lifecycles(warm)
    bads(len(reqs) * 5)
    gc.collect()
    warmed = sample(pid)
    timeline = [warmed]
    rounds = 10
    for r in range(rounds):
        bads(bad // rounds)
        lifecycles(pods // rounds)
        timeline.append(sample(pid))
        print(f"soak: round {r + 1}/{rounds}: rss {timeline[-1]['rss_mib']:.1f} MiB, "
              f"fds {timeline[-1]['fds']}", file=sys.stderr)
    time.sleep(2)
    end = sample(pid)
    left = client.call("ListPodSandbox", pb.ListPodSandboxRequest())[0].items
    return {
        "endpoint": endpoint, "bad_requests": bad, "pod_lifecycles": pods,
        "start": start, "warmed": warmed, "end": end, "timeline": timeline,
        "peak_rss_mib": max(s["rss_mib"] for s in timeline),
        "rss_growth_mib": round(end["rss_mib"] - warmed["rss_mib"], 2),
        "fd_growth": end["fds"] - warmed["fds"],
        "codes": codes, "bad_codes_unexpected": sorted(set(codes) - BAD_CODES - {"OK"}),
        "lifecycle_errors": res.errors[:20], "pods_left": len(left),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bad", type=int, default=10000)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--warm", type=int, default=20, help="pod lifecycles before the baseline")
    p.add_argument("--image", default=BenchConfig().image)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    report = run(args.endpoint, args.bad, args.pods, args.image, args.warm)
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    ok = (report["rss_growth_mib"] <= 5 and report["fd_growth"] <= 0
          and not report["bad_codes_unexpected"] and not report["pods_left"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
