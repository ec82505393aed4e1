"""Regenerate the gRPC code from ``filer.proto``: ``.venv/bin/python -m workers.bridge.sources.proto.generate``.

The proto path is the repository root so the generated modules import each other as
``workers.bridge.sources.proto.filer_pb2`` (protoc writes imports relative to its include path).
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[4]
PROTO = Path(__file__).with_name("filer.proto").relative_to(ROOT)


def main(out: Path = ROOT) -> int:
    """Write ``filer_pb2.py``, ``filer_pb2.pyi`` and ``filer_pb2_grpc.py`` under ``out`` (the repo by default)."""
    return protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={ROOT}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
