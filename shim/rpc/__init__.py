"""CRI handlers, one module per call (or per small group of calls), registered by name."""

from shim.rpc import (  # noqa: F401  (registration)
    container_attach,
    container_create,
    container_events,
    container_exec,
    container_exec_sync,
    container_list,
    container_remove,
    container_reopen_log,
    container_start,
    container_stats,
    container_status,
    container_stop,
    container_update,
    image_fs_info,
    image_list,
    image_pull,
    image_remove,
    image_status,
    metrics_list,
    runtime_config,
    sandbox_list,
    sandbox_port_forward,
    sandbox_remove,
    sandbox_run,
    sandbox_stats,
    sandbox_status,
    sandbox_stop,
    sandbox_update,
    status,
    version,
)
from shim.rpc.registry import HANDLERS, READY

__all__ = ["HANDLERS", "READY"]
