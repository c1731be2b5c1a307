"""GetContainerEvents: a stream of container transitions, each with the pod's status and
its containers' statuses as they were at that moment (shim.containers.events)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from podsandbox.types import PodStatus
from shim.containers.events import ContainerEvent, Kind
from shim.cri import api_pb2 as pb
from shim.rpc import container_convert, sandbox_convert
from shim.rpc.registry import rpc
from shim.rpc.services import Services
from shim.store import SandboxRecord

_TYPES = {
    Kind.CREATED: pb.CONTAINER_CREATED_EVENT,
    Kind.STARTED: pb.CONTAINER_STARTED_EVENT,
    Kind.STOPPED: pb.CONTAINER_STOPPED_EVENT,
    Kind.DELETED: pb.CONTAINER_DELETED_EVENT,
}


def to_message(ev: ContainerEvent, status_view: Callable[[SandboxRecord], PodStatus]
               ) -> pb.ContainerEventResponse:
    msg = pb.ContainerEventResponse(
        container_id=ev.container_id, container_event_type=_TYPES[ev.kind], created_at=ev.at,
        containers_statuses=[container_convert.to_status(c) for c in ev.containers])
    if ev.pod is not None:
        msg.pod_sandbox_status.CopyFrom(sandbox_convert.to_status(ev.pod, status_view(ev.pod)))
    return msg


@rpc("GetContainerEvents")
async def get_container_events(
    d: Services, req: pb.GetEventsRequest
) -> AsyncIterator[pb.ContainerEventResponse]:
    with d.containers.events.subscribe() as sub:
        while True:
            yield to_message(await sub.get(), d.sandboxes.status_view)
