"""Developer entry point; needs nothing but Python 3.10+.

    python3 dev.py demo [--port 8000]   run the demo on http://127.0.0.1:8000
    python3 dev.py test [pytest args]   run the whole test suite (two workers)
    python3 dev.py lint                 ruff and mypy
    python3 dev.py bench [--quick]      every benchmark: a table, JSON and a chart

Each command first makes ``.venv`` (once) and installs the project into it with its
``dev`` extra, at the versions ``constraints.txt`` pins (again whenever one of
pyproject.toml, the version or the constraints changes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed"
#: The versions CI runs (see the file).
CONSTRAINTS = ROOT / "constraints.txt"


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_venv() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may be run by any python3
        sys.exit("resumable-sse needs Python 3.10 or newer")
    # The installed metadata comes from pyproject.toml and the version file; the versions
    # installed, from the constraints.
    sources = (ROOT / "pyproject.toml", ROOT / "resumable_sse" / "_version.py", CONSTRAINTS)
    wanted = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("installing resumable-sse[dev] into .venv", flush=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]", "-c", CONSTRAINTS)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    try:
        if command == "demo":
            run(PYTHON, "-m", "resumable_sse", "demo", *rest)
        elif command == "test":
            # Two workers (pytest-xdist): many tests wait on servers, subprocesses or
            # Redis expiry, so two run well side by side even on two cores. -n 0 runs
            # in one process.
            run(PYTHON, "-m", "pytest", "-n", "2", *rest)
        elif command == "bench":
            run(PYTHON, "-m", "benchmarks.run", *rest)
        else:
            run(BIN / "ruff", "check", ".")
            run(BIN / "ruff", "format", "--check", ".")
            run(BIN / "mypy")
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
