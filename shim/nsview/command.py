"""``tether ns [check] [--json]``: gather (CRI, else the store), read /proc, report."""

from __future__ import annotations

import sqlite3
import sys
from typing import TextIO

import grpc

from shim.nsview import cri, model, proc, store
from shim.store.db import SchemaTooNew

EXIT_OK = 0
EXIT_FINDINGS = 1  # `tether ns check` found risky sharing
EXIT_ERROR = 2  # no state could be read


def gather(source: str, socket: str, root: str,
           err: TextIO = sys.stderr) -> model.Report:
    """``source``: "cri", "store", or "auto" (the daemon, else the store when it is down)."""
    if source in ("auto", "cri"):
        try:
            pods, containers = cri.read(socket)
            used = "cri"
        except cri.Unreachable as e:
            if source == "cri":
                raise
            print(f"tether ns: {e}; reading the store under {root}", file=err)
            pods, containers = store.read(root)
            used = "store"
    else:
        pods, containers = store.read(root)
        used = "store"
    live = {pid: proc.inodes(pid) for pid in
            {p.pid for p in pods} | {c.pid for c in containers} if pid}
    return model.build(pods, containers, live, proc.node_inodes(), used)


def run(check: bool, as_json: bool, source: str, socket: str, root: str,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        report = gather(source, socket, root, err)
    except (cri.Unreachable, grpc.RpcError, OSError, sqlite3.Error, SchemaTooNew) as e:
        detail = e.details() if isinstance(e, grpc.RpcError) else e
        print(f"tether ns: cannot read the daemon's state: {detail}", file=err)
        return EXIT_ERROR
    if not check:
        out.write(model.dumps(model.to_json(report)) if as_json else model.render(report))
        return EXIT_OK
    findings = model.check(report)
    out.write(model.dumps(model.findings_json(findings)) if as_json
              else model.render_findings(findings))
    return EXIT_FINDINGS if findings else EXIT_OK
