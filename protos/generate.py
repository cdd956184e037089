"""Generate the Python stubs for protos/: the public API (herald.v1) into the client package
(clients/python/herald/v1), the work items herald's services hand each other (herald.internal.v1) into the server
(herald/internal/v1); under --root DIR instead of the repository for a check.

The stubs are committed so that `pip install` needs no code generator;
tests/test_protos.py regenerates them into a temporary folder and fails when
the committed copy is stale. Run it with `make proto`.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGES = (Path("herald/v1"), Path("herald/internal/v1"))
# Where each package's stubs live, relative to the root: what tests/test_protos.py compares.
GENERATED = {Path("herald/v1"): Path("clients/python/herald/v1"), Path("herald/internal"): Path("herald/internal")}


def generate(root: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for package in PACKAGES for p in (PROTOS / package).glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        # `herald` is a namespace package shared by the client and the server: no __init__.py of its own.
        for init in (Path("herald/internal"), *PACKAGES):
            note = f"Generated from protos/{init} by protos/generate.py; do not edit."
            (out / init / "__init__.py").write_text(f'"""{note}"""\n')
        # PEP 561: other teams' type checkers read the .pyi stubs of an installed package only with this marker.
        (out / "herald" / "v1" / "py.typed").write_text("")
        for generated, folder in GENERATED.items():
            target = root / folder
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out / generated, target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT)
    generate(parser.parse_args().root)
