"""``python -m bench`` / ``tether bench``: benchmark CRI runtimes through the CRI API.

Examples:
    python -m bench --endpoint unix:///run/containerd/containerd.sock -w lifecycle,density
    python -m bench --compare unix:///run/ctd.sock unix:///run/tether/tether.sock \\
        --json out.json --cni-conf /etc/cni/net.d/10-bench.conflist
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from bench import report, sysinfo
from bench.catalog import WORKLOADS
from bench.cri import CriError, Unsupported
from bench.floor import FloorConfig
from bench.progress import Progress
from bench.runner import ConnectError, Runner, connect, run_floor, unique_labels
from bench.templates import (
    BENCH_LABEL,
    DEFAULT_CONTAINER,
    DEFAULT_IMAGE,
    DEFAULT_POD,
    BenchConfig,
    load_template,
)
from bench.workloads import Target

ALL_WORKLOADS = ("basic", "lifecycle", "sandbox", "concurrency", "density", "image",
                 "streaming", "floor")
DEFAULT_WORKLOADS = ",".join(ALL_WORKLOADS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tether bench",
        description="Benchmark CRI runtimes through the CRI API (and a no-daemon floor).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ep = p.add_mutually_exclusive_group()
    ep.add_argument("--endpoint", help="CRI endpoint, unix:///path/to.sock")
    ep.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="two endpoints run alternately; ratios are B/A")
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="labels of the runtimes (default: runtime_name from Version)")
    p.add_argument("-w", "--workloads", default=DEFAULT_WORKLOADS,
                   help=f"comma-separated subset of {','.join(ALL_WORKLOADS)}")
    g = p.add_argument_group("workload sizes")
    g.add_argument("-n", "--pods", type=int, default=20, help="lifecycle: pods (N)")
    g.add_argument("-k", "--workers", type=int, default=4, help="concurrency: workers (K)")
    g.add_argument("--concurrency-pods", type=int, default=16,
                   help="concurrency: pods per round")
    g.add_argument("--concurrency-rounds", type=int, default=2)
    g.add_argument("-m", "--density", type=int, default=10, help="density: pods held (M)")
    g.add_argument("--density-rounds", type=int, default=1)
    g.add_argument("--list-iterations", type=int, default=50,
                   help="density/image: calls of each List*/ImageStatus RPC")
    g.add_argument("--basic-iterations", type=int, default=20)
    g.add_argument("--image-rounds", type=int, default=3)
    g.add_argument("--stream-rounds", type=int, default=3, help="streaming: rounds")
    g.add_argument("--stream-iterations", type=int, default=20,
                   help="streaming: crictl exec echo per round")
    g.add_argument("--stream-mb", type=int, default=64,
                   help="streaming: MiB fetched through port-forward")
    g.add_argument("--stream-parallel", type=int, default=10,
                   help="streaming: clients at once through one forward")
    g.add_argument("--image-fill", type=int, default=0,
                   help="image: pull this many distinct small images first (pushed by "
                        "python -m bench.imagefill), so List/ImageStatus see a full store")
    g.add_argument("--image-fill-prefix", default="",
                   help="image: references of the fill images, <prefix>000:latest ... "
                        "(e.g. 127.0.0.1:5000/tether-bench/fill-)")
    g.add_argument("--warmup", type=int, default=1,
                   help="lifecycle: untimed pods per runtime first")
    g.add_argument("--settle", type=float, default=1.0,
                   help="density: seconds between the last start and the memory snapshot")
    c = p.add_argument_group("pods and images")
    c.add_argument("--image", default=DEFAULT_IMAGE,
                   help="container image (pulled through the CRI ImageService first)")
    c.add_argument("--pull-image", default="",
                   help="image workload: image to remove+pull (default: --image)")
    c.add_argument("--handler", default="", help="runtime handler ('' = runtime's default)")
    c.add_argument("--pod-config", help="pod sandbox config template (crictl JSON)")
    c.add_argument("--container-config", help="container config template (crictl JSON)")
    c.add_argument("--no-containers", action="store_true",
                   help="pods without containers in lifecycle/concurrency/density too "
                        "(the sandbox workload never creates containers)")
    c.add_argument("--stop-timeout", type=int, default=0,
                   help="StopContainer timeout (s); 0 = SIGKILL at once")
    c.add_argument("--rpc-timeout", type=float, default=120.0)
    c.add_argument("--log-dir", default="/tmp/tether-bench-logs",
                   help="parent of the pods' log directories")
    f = p.add_argument_group("floor (no daemon)")
    f.add_argument("--floor-rounds", type=int, help="default: --pods")
    f.add_argument("--cni-conf", default="",
                   help="CNI .conflist for the floor's direct ADD/DEL (omit: no CNI steps)")
    f.add_argument("--cni-bin", default="/usr/lib/cni")
    f.add_argument("--runc", default="", help="OCI runtime for the floor (default: runc)")
    f.add_argument("--catatonit", default="")
    f.add_argument("--floor-rootfs", default="",
                   help="unpacked rootfs for the floor bundle (default: static busybox copy)")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    o.add_argument("--plot", metavar="FILE.png", help="latency distributions (matplotlib)")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("-q", "--quiet", action="store_true", help="no table on stdout")
    p.add_argument("--cleanup", action="store_true",
                   help=f"stop and remove every pod labelled {BENCH_LABEL} on the "
                        "endpoint(s), then exit")
    p.add_argument("--cleanup-all", action="store_true",
                   help="stop and remove EVERY pod on the endpoint(s), then exit "
                        "(for a runtime instance of the bench's own)")
    p.add_argument("--print-templates", action="store_true",
                   help="print the default pod and container templates and exit")
    return p


def _config(args: argparse.Namespace, run_id: str) -> BenchConfig:
    return BenchConfig(
        image=args.image,
        pull_image=args.pull_image,
        handler=args.handler,
        pods=args.pods,
        workers=args.workers,
        concurrency_pods=args.concurrency_pods,
        concurrency_rounds=args.concurrency_rounds,
        density=args.density,
        density_rounds=args.density_rounds,
        list_iterations=args.list_iterations,
        basic_iterations=args.basic_iterations,
        image_rounds=args.image_rounds,
        image_fill=args.image_fill,
        image_fill_prefix=args.image_fill_prefix,
        stream_rounds=args.stream_rounds,
        stream_iterations=args.stream_iterations,
        stream_mb=args.stream_mb,
        stream_parallel=args.stream_parallel,
        settle_seconds=args.settle,
        stop_timeout=args.stop_timeout,
        warmup=args.warmup,
        containers=not args.no_containers,
        rpc_timeout=args.rpc_timeout,
        run_id=run_id,
        log_root=str(Path(args.log_dir) / run_id),
        pod_template=load_template(args.pod_config, DEFAULT_POD),
        container_template=load_template(args.container_config, DEFAULT_CONTAINER),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench`` and ``tether bench`` (argv without the program)."""
    args = parser().parse_args(argv)
    if args.print_templates:
        print(json.dumps({"pod": DEFAULT_POD, "container": DEFAULT_CONTAINER}, indent=2))
        return 0
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in names if w not in ALL_WORKLOADS]
    if bad:
        print(f"tether bench: unknown workload(s) {', '.join(bad)}; "
              f"choose from {', '.join(ALL_WORKLOADS)}", file=sys.stderr)
        return 2
    endpoints: list[str] = list(args.compare or ([args.endpoint] if args.endpoint else []))
    cri_names = [w for w in names if w != "floor"]
    if args.cleanup_all:
        args.cleanup = True
    if cri_names and not endpoints and not args.cleanup:
        print("tether bench: --endpoint or --compare is needed (or -w floor)", file=sys.stderr)
        return 2

    run_id = uuid.uuid4().hex[:8]
    try:
        cfg = _config(args, run_id)
    except (OSError, ValueError) as e:
        print(f"tether bench: {e}", file=sys.stderr)
        return 2
    labels = list(args.names or [])
    targets: list[Target] = []
    try:
        for i, ep in enumerate(endpoints):
            targets.append(connect(ep, labels[i] if i < len(labels) else None,
                                   args.rpc_timeout))
    except (ConnectError, ValueError) as e:
        print(f"tether bench: {e}", file=sys.stderr)
        for t in targets:
            t.client.close()
        return 1
    unique_labels(targets)

    if args.cleanup:
        for t in targets:
            try:
                n = t.client.remove_pods(None if args.cleanup_all else BENCH_LABEL)
                print(f"{t.label}: removed {n} pod(s)")
            except Unsupported:
                print(f"{t.label}: ListPodSandbox unsupported: no pods to remove")
            except CriError as e:
                print(f"{t.label}: {e}", file=sys.stderr)
            t.client.close()
        return 0

    floor_rounds = args.floor_rounds if args.floor_rounds is not None else args.pods
    fcfg = FloorConfig(rounds=floor_rounds, runc=args.runc, catatonit=args.catatonit,
                       rootfs=args.floor_rootfs, cni_conf=args.cni_conf, cni_bin=args.cni_bin)
    fcfg.resolve()
    progress = Progress(Runner.units(cfg, names, len(targets), floor_rounds),
                        enabled=False if args.no_progress else None)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    run = report.RunData(
        started=started.isoformat(timespec="seconds"),
        command=["tether", "bench", *(argv if argv is not None else sys.argv[1:])],
        config=cfg.public(),
        machine=sysinfo.machine_info(),
        tools=sysinfo.tool_versions(),
        runtimes=[{"label": t.label, "endpoint": t.endpoint, "version": t.version,
                   "daemon_pid": t.daemon_pid} for t in targets],
        workloads=[w for w in names if w == "floor" or targets],
    )
    runner = Runner(cfg, targets, progress)
    interrupted = False
    _sigterm_as_interrupt()
    try:
        for name in names:
            if name == "floor":
                run.floor = run_floor(fcfg, progress)
                run.floor_config = {
                    "rounds": fcfg.rounds, "runc": fcfg.runc, "catatonit": fcfg.catatonit,
                    "cni_conf": fcfg.cni_conf, "cni_bin": fcfg.cni_bin,
                    "rootfs": fcfg.rootfs or "static busybox copy",
                }
            elif targets and name in WORKLOADS:
                runner.run_workload(name)
    except KeyboardInterrupt:
        interrupted = True
        progress.message("interrupted: cleaning up")
    finally:
        progress.set_note("cleaning up")
        runner.cleanup()
        progress.close()
        for t in targets:
            t.client.close()
    run.results = runner.results
    run.duration_s = time.monotonic() - t0
    descriptions = {k: v.description for k, v in WORKLOADS.items()}
    if not args.quiet:
        sys.stdout.write(report.render(run, descriptions))
    if args.json:
        report.write_json(run, args.json)
        print(f"JSON written to {args.json}", file=sys.stderr)
    if args.plot:
        why = report.plot(run, args.plot)
        print(f"plot: {why}" if why else f"plot written to {args.plot}", file=sys.stderr)
    if interrupted:
        return 130
    errors = sum(len(r.errors) for per in runner.results.values() for r in per.values())
    errors += len(run.floor.errors) if run.floor else 0
    return 1 if errors else 0


def _sigterm_as_interrupt() -> None:
    """SIGTERM cleans up like Ctrl-C (pods removed, floor containers deleted)."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
