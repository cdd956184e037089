"""The committed stubs (clients/python/herald/v1, herald/internal) match protos/ (regenerate with `make proto`)."""

import subprocess
import sys
from pathlib import Path

from protos.generate import GENERATED

ROOT = Path(__file__).resolve().parent.parent


def _files(root: Path) -> dict[Path, bytes]:
    return {
        p.relative_to(root): p.read_bytes()
        for folder in GENERATED.values()
        for p in (root / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--root", str(tmp_path)], check=True)
    fresh, current = _files(tmp_path), _files(ROOT)
    assert fresh.keys() == current.keys(), "stub files added or removed: run `make proto`"
    stale = sorted(str(name) for name in fresh if fresh[name] != current[name])
    assert not stale, f"stale stubs, run `make proto`: {stale}"
