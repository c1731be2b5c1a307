"""The neutral error hierarchy (cni/errdefs.py) and its one mapping to gRPC codes, in the
interceptor: every class still reaches the client with the gRPC code it always had."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from cni import errdefs
from shim import errors, interceptor
from shim.cri import api_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]

# What each class answered before the codes became neutral: the client-visible contract.
EXPECTED = {
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "FailedPrecondition": grpc.StatusCode.FAILED_PRECONDITION,
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "Unavailable": grpc.StatusCode.UNAVAILABLE,
    "DeadlineExceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "Unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "PermissionDenied": grpc.StatusCode.PERMISSION_DENIED,
    "ResourceExhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "Unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "Internal": grpc.StatusCode.INTERNAL,
    "TetherError": grpc.StatusCode.INTERNAL,
}


def test_every_neutral_code_has_a_grpc_code() -> None:
    assert set(interceptor.GRPC_CODES) == set(errdefs.Code)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_class_maps_to_its_old_grpc_code(name: str) -> None:
    cls = getattr(errors, name)
    assert cls is getattr(errdefs, name)  # shim.errors re-exports, it does not subclass
    assert interceptor.GRPC_CODES[cls.code] == EXPECTED[name]


def test_cni_plugin_errors_keep_their_codes() -> None:
    from cni.errors import plugin_error
    assert interceptor.GRPC_CODES[plugin_error("bridge", "ADD", code=11, msg="x").code] == \
        grpc.StatusCode.UNAVAILABLE
    assert interceptor.GRPC_CODES[plugin_error("bridge", "ADD", code=7, msg="x").code] == \
        grpc.StatusCode.INTERNAL


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return out | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_the_neutral_module_imports_nothing() -> None:
    assert _imports(ROOT / "cni" / "errdefs.py") <= {"__future__", "enum"}


def test_only_the_interceptor_maps_codes() -> None:
    """grpc in an error module would be a second mapping."""
    for path in (ROOT / "cni" / "errdefs.py", ROOT / "shim" / "errors.py"):
        assert not any(m.split(".")[0] == "grpc" for m in _imports(path)), path
        assert "StatusCode" not in path.read_text(), path


def test_the_interceptor_refuses_with_the_mapped_code_and_the_message() -> None:
    async def behavior(request: Any) -> Any:
        raise errors.NotFound('pod sandbox "p1" not found')

    with pytest.raises(interceptor.Refused) as info:
        asyncio.run(interceptor.run_unary(
            "/runtime.v1.RuntimeService/PodSandboxStatus", behavior,
            pb.PodSandboxStatusRequest(pod_sandbox_id="p1"), ()))
    assert (info.value.code, info.value.message) == \
        (grpc.StatusCode.NOT_FOUND, 'pod sandbox "p1" not found')
