"""`python -m bench [name ...] [-- options]`: run benchmarks against LOYALTY_BENCH_DATABASE_URL."""

import importlib
import os
import sys

BENCHES = ("till", "fanout", "qr", "scale")
DEFAULT = ("till", "fanout", "qr")


def main(argv: list[str]) -> None:
    names, options = argv, []
    if "--" in argv:
        split = argv.index("--")
        names, options = argv[:split], argv[split + 1 :]
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    url = os.environ.get("LOYALTY_BENCH_DATABASE_URL")
    if not url:
        sys.exit("set LOYALTY_BENCH_DATABASE_URL to a PostgreSQL database (scripts/bench does)")
    for name in names or DEFAULT:
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main(url, options)


if __name__ == "__main__":
    main(sys.argv[1:])
