"""Regenerate the CRI v1 Python bindings in shim/cri from proto/runtime/v1/api.proto.

Usage: python tools/gen_proto.py [--check] [--out DIR]

protoc emits the modules under runtime/v1/; they are written flat into shim/cri
with the cross-module import rewritten to ``from shim.cri import api_pb2``.
The output depends on the grpcio-tools version (it embeds protobuf/grpcio
version checks), so regenerate with the version pinned for the project.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = "runtime/v1/api.proto"
DEFAULT_OUT = ROOT / "shim" / "cri"
OUTPUTS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")
REWRITES = (
    ("from runtime.v1 import api_pb2 as", "from shim.cri import api_pb2 as"),
    ("'runtime.v1.api_pb2'", "'shim.cri.api_pb2'"),
)


def generate() -> dict[str, bytes]:
    """Run protoc into a temp dir and return the rewritten outputs by file name."""
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                PROTO_FILE,
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        gen_dir = Path(tmp) / Path(PROTO_FILE).parent
        result: dict[str, bytes] = {}
        for name in OUTPUTS:
            text = (gen_dir / name).read_text(encoding="utf-8")
            for old, new in REWRITES:
                text = text.replace(old, new)
            result[name] = text.encode("utf-8")
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    out_dir: Path = args.out

    generated = generate()
    if args.check:
        stale = [
            name
            for name, data in generated.items()
            if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != data
        ]
        for name in stale:
            print(f"out of date: {out_dir / name}", file=sys.stderr)
        if stale:
            print("run: python tools/gen_proto.py", file=sys.stderr)
            return 1
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in generated.items():
        (out_dir / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
