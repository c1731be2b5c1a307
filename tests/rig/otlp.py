"""An OTLP/gRPC trace collector in the test process: opentelemetry-proto's TraceService on
loopback (inside the test network namespace), keeping every span it is sent, flattened."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as svc_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.rig.netns import assert_private_netns


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    kind: int  # trace_pb2.Span.SpanKind
    attributes: dict[str, Any]
    status: int  # trace_pb2.Status.StatusCode
    status_message: str
    resource: dict[str, Any]
    start_ns: int
    end_ns: int

    @property
    def error(self) -> bool:
        return self.status == trace_pb2.Status.STATUS_CODE_ERROR


class Collector(svc_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.exports = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(self, request: svc.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> svc.ExportTraceServiceResponse:
        got = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(SpanRecord(
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(), name=s.name, kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status=s.status.code, status_message=s.status.message,
                        resource=resource, start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano))
        with self._lock:
            self.spans.extend(got)
            self.exports += 1
        return svc.ExportTraceServiceResponse()

    def start(self) -> Collector:
        assert_private_netns()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        svc_grpc.add_TraceServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def snapshot(self) -> list[SpanRecord]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, what: Callable[[list[SpanRecord]], bool], timeout: float = 30.0
                 ) -> list[SpanRecord]:
        """The spans once ``what`` holds of them (the exporter sends in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if what(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise AssertionError(f"spans not exported within {timeout}s; have {names}")
            time.sleep(0.1)
