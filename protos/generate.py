"""Generate the Python stubs for protos/ (herald.v1, herald.internal.v1) into libs/proto (or --out DIR).

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


# The public API (herald.v1) and the work items herald's services hand each other (herald.internal.v1).
PACKAGES = (Path("herald/v1"), Path("herald/internal/v1"))


def generate(out: Path) -> None:
    for package in PACKAGES:
        if (out / package).exists():
            shutil.rmtree(out / package)
        (out / package).mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for package in PACKAGES for p in (PROTOS / package).glob("*.proto"))
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
    for init in (Path("herald"), Path("herald/internal"), *PACKAGES):
        note = f"Generated from protos/{init} by protos/generate.py; do not edit."
        (out / init / "__init__.py").write_text(f'"""{note}"""\n')
    # PEP 561: other teams' type checkers read the .pyi stubs of an installed package only with this marker.
    (out / "herald" / "py.typed").write_text("")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "libs" / "proto")
    generate(parser.parse_args().out)
