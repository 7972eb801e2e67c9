"""Run every benchmark (``python -m benchmarks [name ...]``) and print a one-line summary each."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(selected: list[str]) -> int:
    """Run the selected (default: all) ``bench_*`` modules in order."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    if selected:
        names = [n for n in names if n in selected or n.removeprefix("bench_") in selected]
    failures = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures += 1
            print(f"{name} FAILED: {exc!r}", flush=True)
        print(f"=== {name} done in {time.perf_counter() - started:.1f} s ===", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
