"""Facts from the daemon's store and records on disk, for when the daemon is down."""

from __future__ import annotations

import json
import os
from typing import Any

from podsandbox.kernel import alive
from podsandbox.views import status_view
from shim.containers.views import running_pid
from shim.containers.views import status_view as container_status_view
from shim.nsview.model import ContainerFacts, PodFacts, spec_namespaces
from shim.store import readonly

DB_NAME = "tether.db"  # under paths.root, as the daemon opens it


def _spec(bundle: str) -> Any:
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read(root: str) -> tuple[list[PodFacts], list[ContainerFacts]]:
    sandboxes, records = readonly.read(os.path.join(root, DB_NAME))
    pods = []
    for rec in sandboxes:
        v = status_view(rec)  # as the daemon's PodSandboxStatus reads a pod
        # a pid is only trusted with the start time recorded with it
        pid = v.holder.pid if v.holder and alive(v.holder.pid, v.holder.start_time) else 0
        pods.append(PodFacts(
            id=rec.id, name=rec.name, namespace=rec.namespace, state=rec.state.value, pid=pid,
            modes={n.kind: n.mode.value for n in v.namespaces},
            recorded={n.kind: n.inode for n in v.namespaces if n.inode is not None},
            privileged=v.privileged,
            host_ports=tuple(p.host_port for p in v.port_mappings if p.host_port),
        ))
    containers = []
    for crec in records:
        cv = container_status_view(crec)  # as the daemon's ContainerStatus reads one
        containers.append(ContainerFacts(
            id=crec.id, pod_id=crec.sandbox_id, name=crec.name, state=crec.state.value,
            pid=running_pid(crec), privileged=cv.privileged,
            spec_namespaces=spec_namespaces(_spec(cv.bundle)),
        ))
    return pods, containers
