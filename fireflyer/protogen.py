"""Regenerates the committed gRPC/protobuf stubs from every ``*/protos/*.proto`` of the project.

One command for all wire types: ``python -m fireflyer.protogen`` (write) or ``--check`` (exit 1
if a committed stub differs from what the installed grpcio-tools generates; a test runs this).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fs3", "haiplatform")


def proto_files() -> list[Path]:
    """Every .proto of the project, relative to the repository root."""
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).glob("**/protos/*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over all protos into ``out_dir``; return the generated files (relative paths)."""
    from grpc_tools import protoc

    protos = [str(p) for p in proto_files()]
    if not protos:
        return []
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(ROOT / p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return sorted(p.relative_to(out_dir) for p in out_dir.glob("**/*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    args = parser.parse_args(argv)
    if not args.check:
        generated = generate(ROOT)
        print(f"generated {len(generated)} files from {len(proto_files())} protos")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        stale = [
            str(rel)
            for rel in generated
            if not (ROOT / rel).exists() or not filecmp.cmp(Path(tmp) / rel, ROOT / rel, shallow=False)
        ]
    if stale:
        print("stale generated stubs (run `python -m fireflyer.protogen`): " + ", ".join(stale))
        return 1
    print(f"{len(generated)} generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
