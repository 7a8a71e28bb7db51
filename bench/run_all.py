"""Run every benchmark in bench/, each in a fresh process (``--quick``: the seconds-long smoke mode)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick = ["--quick"] if "--quick" in argv else []
    names = sorted(m.name for m in pkgutil.iter_modules([str(ROOT)]) if m.name.startswith("bench_"))
    failed = []
    for name in names:
        print(f"== {name} {' '.join(quick)}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *quick], cwd=ROOT.parent).returncode:
            failed.append(name)
    print(f"failed: {failed}" if failed else f"all {len(names)} benchmarks ran")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
