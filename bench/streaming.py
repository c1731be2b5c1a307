"""The streaming workload: what `kubectl exec` and `kubectl port-forward` cost, through the
real crictl (the same client-go streaming code the kubelet proxies for).

Per runtime, one pod whose container serves a file of ``stream_mb`` MiB over HTTP (busybox
httpd on :8080). Each round:

- ``crictl exec echo``: the wall time of ``crictl exec <ctr> echo`` (Exec RPC, the upgrade
  to the runtime's streaming server, the process, the exit code), ``stream_iterations`` times;
- port-forward: ``crictl port-forward <pod> :8080``, then the file fetched through it once
  (MB/s through one connection) and by ``stream_parallel`` clients at once (the sum, MB/s).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from bench.cri import CriError, Unsupported
from bench.templates import BenchConfig
from bench.workloads import (
    Pod,
    PodFactory,
    Target,
    Tick,
    Workload,
    WorkloadResult,
    ensure_image,
    start_pod,
    stop_pod,
)

PORT = 8080
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


def find_crictl() -> str | None:
    """$CRICTL, PATH, then ../shared/tools/bin next to the checkout."""
    env = os.environ.get("CRICTL")
    if env:
        return env
    shared = Path(__file__).resolve().parents[2] / "shared" / "tools" / "bin" / "crictl"
    return shutil.which("crictl") or (str(shared) if os.access(shared, os.X_OK) else None)


def fetch(url: str, timeout: float = 120) -> int:
    """GET ``url``; the number of body bytes read."""
    n = 0
    with urllib.request.urlopen(url, timeout=timeout) as r:
        while chunk := r.read(1 << 20):
            n += len(chunk)
    return n


class Streaming(Workload):
    name = "streaming"
    description = "crictl exec echo round trip; port-forward MB/s (1 connection, N at once)"

    def __init__(self, cfg: BenchConfig) -> None:
        super().__init__(cfg)
        self._pods: dict[str, Pod] = {}
        self._crictl = find_crictl()

    def rounds(self) -> int:
        return self.cfg.stream_rounds

    def units(self) -> int:
        return 2

    def _crictl_argv(self, t: Target, *args: str) -> list[str]:
        assert self._crictl is not None
        return [self._crictl, "--config", "/dev/null", "-r", t.endpoint, "-i", t.endpoint,
                "--timeout", "60s", *args]

    def setup(self, t: Target) -> WorkloadResult | None:
        res = WorkloadResult()
        if self._crictl is None:
            res.errors.append("crictl not found ($CRICTL, PATH, ../shared/tools/bin)")
            res.abandon = True
            return res
        bad = ensure_image(self.cfg, t, self.cfg.image)
        if bad is not None:
            return bad
        pod = PodFactory(self.cfg, t).make()
        cc = pod.container_config
        cc.metadata.name = "web"
        del cc.command[:]
        cc.command.extend(["sh", "-c", f"dd if=/dev/zero of=/tmp/big bs=1M "
                           f"count={self.cfg.stream_mb} 2>/dev/null && "
                           f"exec httpd -f -p {PORT} -h /tmp"])
        if not start_pod(self.cfg, t, pod, res, record=False):
            stop_pod(self.cfg, t, pod, res, record=False)
            res.abandon = True
            return res
        self._pods[t.label] = pod
        # the server is up once a fetch through a forward gets the whole file
        deadline = time.monotonic() + 30
        while True:
            try:
                with self._forward(t, pod) as local:
                    if fetch(f"http://127.0.0.1:{local}/big") == self.cfg.stream_mb << 20:
                        return None
            except (OSError, RuntimeError) as e:
                if time.monotonic() > deadline:
                    res.errors.append(f"port-forward never served the file: {e}")
                    res.abandon = True
                    self._finish(t)
                    return res
            time.sleep(0.5)

    def _finish(self, t: Target) -> None:
        pod = self._pods.pop(t.label, None)
        if pod is not None:
            stop_pod(self.cfg, t, pod, WorkloadResult(), record=False)

    def _forward(self, t: Target, pod: Pod) -> _Forward:
        return _Forward(self._crictl_argv(t, "port-forward", pod.sandbox_id, f":{PORT}"))

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        res = WorkloadResult()
        pod = self._pods[t.label]
        try:
            for _ in range(self.cfg.stream_iterations):
                t0 = time.perf_counter()
                p = subprocess.run(self._crictl_argv(t, "exec", pod.container_id, "echo", "hi"),
                                   capture_output=True, text=True, timeout=60, check=False)
                dt = time.perf_counter() - t0
                if p.returncode != 0 or p.stdout != "hi\n":
                    res.errors.append(f"crictl exec: rc {p.returncode}: {p.stderr.strip()}")
                    break
                res.add("crictl exec echo", dt)
            tick()
            size = self.cfg.stream_mb << 20
            with self._forward(t, pod) as local:
                url = f"http://127.0.0.1:{local}/big"
                t0 = time.perf_counter()
                got = fetch(url)
                dt = time.perf_counter() - t0
                if got != size:
                    res.errors.append(f"port-forward: {got} of {size} bytes")
                else:
                    res.add("port-forward fetch", dt)
                    res.metric("pf_mb_per_s", size / dt / 1e6)
                counts: list[int] = []
                lock = threading.Lock()

                def one() -> None:
                    try:
                        n = fetch(url)
                    except OSError:
                        n = 0
                    with lock:
                        counts.append(n)

                threads = [threading.Thread(target=one) for _ in range(self.cfg.stream_parallel)]
                t0 = time.perf_counter()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                dt = time.perf_counter() - t0
                if counts != [size] * len(threads):
                    res.errors.append(f"port-forward x{len(threads)}: got {counts}")
                else:
                    res.metric("pf_parallel_mb_per_s", size * len(threads) / dt / 1e6)
            tick()
        except (Unsupported, CriError, OSError, RuntimeError, subprocess.TimeoutExpired) as e:
            res.errors.append(f"streaming: {e}")
        finally:
            if i == self.rounds() - 1:
                self._finish(t)
        return res


class _Forward:
    """``crictl port-forward`` running; the local port it listens on."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> int:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            m = FORWARDING.search(line)
            if m:
                return int(m.group(1))
        self.__exit__()
        raise RuntimeError(f"crictl port-forward did not start: {' | '.join(seen)}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
