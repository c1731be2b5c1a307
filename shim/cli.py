"""The ``tether`` command: ``serve`` runs the daemon, ``config`` prints the effective config,
``ns`` shows the pods' namespaces (``ns check``: risky sharing), ``--version`` the version."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from shim import config as configmod
from shim import log
from shim.socket import SocketGuard, SocketInUse
from shim.version import RUNTIME_NAME, RUNTIME_VERSION

EXIT_CONFIG = 2
EXIT_STARTUP = 1

# CLI flag -> dotted config key; a flag given on the command line overrides every file.
_OVERRIDES: tuple[tuple[str, str, type, str], ...] = (
    ("--root", "paths.root", str, "state directory (store, images, snapshots)"),
    ("--run-dir", "paths.run", str, "runtime directory (namespace pins, runtime state)"),
    ("--listen", "server.listen", str, "CRI unix socket path"),
    ("--cgroup-driver", "runtime.cgroup_driver", str, "cgroupfs or systemd"),
    ("--default-runtime", "runtime.default_handler", str, "default runtime handler"),
    ("--cni-conf-dir", "network.conf_dir", str, "CNI network config directory"),
    ("--metrics-address", "metrics.address", str, "metrics listen address"),
    ("--metrics-port", "metrics.port", int, "metrics listen port"),
    ("--log-level", "logging.level", str, "debug, info, warning or error"),
    ("--log-format", "logging.format", str, "auto, json or console"),
    ("--registries-conf", "images.registries_conf", str, "containers-registries.conf path"),
    ("--registries-conf-dir", "images.registries_conf_dir", str,
     "containers-registries.conf.d drop-in directory"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether", description="A Kubernetes CRI runtime.")
    # the same version string the CRI Version RPC reports (crictl version's RuntimeVersion)
    p.add_argument("--version", action="version", version=f"{RUNTIME_NAME} {RUNTIME_VERSION}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="benchmark a CRI endpoint (see `tether bench --help`)")
    for name, help_ in (("serve", "run the CRI daemon"), ("config", "print the effective config")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--config", help=f"config file (default {configmod.DEFAULT_CONFIG_FILE}, optional)"
        )
        sp.add_argument(
            "--config-dir", default=configmod.DEFAULT_DROPIN_DIR, help="drop-in directory"
        )
        for flag, key, typ, help_text in _OVERRIDES:
            sp.add_argument(flag, dest=key, type=typ, help=help_text)
        sp.add_argument(
            "--no-metrics", dest="metrics.enabled", action="store_const", const=False,
            help="do not serve /metrics",
        )
    ns = sub.add_parser("ns", help="each pod's and container's namespaces (a pod-aware lsns)",
                        description="Each pod's and container's namespaces: inode, whose it is "
                        "(node, pod, container) and who else shares it. `tether ns check` "
                        "lists risky sharing and exits 1 when there is any (docs/namespaces.md).")
    ns.add_argument("action", nargs="?", choices=("check",), help="check: flag risky sharing")
    ns.add_argument("--json", action="store_true", help="machine-readable output")
    ns.add_argument("--source", choices=("auto", "cri", "store"), default="auto",
                    help="the daemon over its socket, the store (read-only), or the daemon "
                    "and the store when it is down (default)")
    ns.add_argument("--config", help=f"config file (default {configmod.DEFAULT_CONFIG_FILE})")
    ns.add_argument("--config-dir", default=configmod.DEFAULT_DROPIN_DIR,
                    help="drop-in directory")
    for flag, key, typ, help_text in _OVERRIDES[:3]:  # --root, --run-dir, --listen
        ns.add_argument(flag, dest=key, type=typ, help=help_text, metavar="PATH")
    return p


def sources_from_args(args: argparse.Namespace) -> configmod.ConfigSources:
    overrides: list[tuple[str, Any]] = []
    for _, key, _, _ in _OVERRIDES:  # `ns` takes only some of them
        value = getattr(args, key, None)
        if value is not None:
            overrides.append((key, value))
    if getattr(args, "metrics.enabled", None) is not None:
        overrides.append(("metrics.enabled", False))
    return configmod.ConfigSources(
        file=args.config or configmod.DEFAULT_CONFIG_FILE,
        file_required=args.config is not None,
        dropin_dir=args.config_dir,
        overrides=tuple(overrides),
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own argument parser; it talks CRI to any endpoint. Imported
        # here only: the daemon never loads it.
        from bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    sources = sources_from_args(args)
    try:
        cfg = configmod.load(sources)
    except configmod.ConfigError as e:
        print(f"tether: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "config":
        sys.stdout.write(cfg.to_toml())
        return 0
    if args.command == "ns":
        from shim.nsview import command  # keep `tether config` light

        return command.run(args.action == "check", args.json, args.source, cfg.server.listen,
                           cfg.paths.root)
    log.configure(cfg.logging.level, cfg.logging.format)
    from shim.daemon import Daemon  # keep `tether config` light

    guard = SocketGuard(cfg.server.listen)
    try:
        guard.acquire()
    except SocketInUse as e:
        print(f"tether: {e}", file=sys.stderr)
        return EXIT_STARTUP
    asyncio.run(Daemon(cfg, sources, guard).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
