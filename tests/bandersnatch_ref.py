"""bandersnatch 8.2, the reference implementation, in a virtualenv of its own (Python >= 3.12)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("BANDERSNATCH_VENV", str(ROOT / ".bench-venvs" / "bandersnatch")))


def _python312() -> str | None:
    candidates = [os.environ.get("BANDERSNATCH_PYTHON", "")]
    candidates += sorted(
        glob.glob(str(Path.home() / ".pyenv/versions/3.1[2-9]*/bin/python3")), reverse=True
    )
    candidates += [shutil.which(n) or "" for n in ("python3.13", "python3.12")]
    for c in candidates:
        if c and Path(c).exists():
            ok = subprocess.run(
                [c, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"], capture_output=True
            )
            if ok.returncode == 0:
                return c
    return None


def bandersnatch() -> Path | None:
    exe = VENV / "bin" / "bandersnatch"
    if exe.exists():
        return exe
    py = _python312()
    if py is None:
        return None
    subprocess.run([py, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "bandersnatch==8.2.0"], check=True)
    return exe


def mirror(exe: Path, config_text: str, directory: Path) -> dict[str, set[str]]:
    """Run ``bandersnatch mirror``; return the filenames its simple pages list, per project."""
    conf = directory / "bandersnatch.conf"
    conf.write_text(config_text)
    p = subprocess.run(
        [str(exe), "-c", str(conf), "mirror"], capture_output=True, text=True, timeout=600
    )
    if p.returncode != 0:
        raise RuntimeError(f"bandersnatch failed:\n{p.stderr[-3000:]}")
    out: dict[str, set[str]] = {}
    simple = directory / "mirror" / "web" / "simple"
    for page in simple.glob("*/index.v1_json"):
        data = json.loads(page.read_text())
        out[page.parent.name] = {f["filename"] for f in data.get("files", [])}
    return out
