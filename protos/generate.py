"""Generate the Python stubs for protos/ into libs/proto (or --out DIR).

The stubs are committed so that `pip install .` needs no code generator;
tests/test_protos.py regenerates them into a temporary folder and fails when
the committed copy is stale. Run it with `make proto`.
"""

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> None:
    package = out / "herald" / "v1"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.glob("herald/v1/*.proto"))
    bin_dir = Path(sys.executable).parent
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
    for init in (out / "herald" / "__init__.py", package / "__init__.py"):
        init.write_text('"""Generated from protos/herald/v1 by protos/generate.py; do not edit."""\n')
    # PEP 561: other teams' type checkers read the .pyi stubs of an installed package only with this marker.
    (out / "herald" / "py.typed").write_text("")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "libs" / "proto")
    generate(parser.parse_args().out)
