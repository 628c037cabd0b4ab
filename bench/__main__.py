"""Command line: ``python -m bench [run] [--quick] [--only NAME...] [--soak SECONDS]
[--repeat N] [--out PATH] [--against REV] [--engine REV]``, ``python -m bench compare
A.json B.json`` and ``python -m bench plot RESULT.json -o PNG``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark streamsave against its baselines; other commands: "
                    "'compare A.json B.json', 'plot RESULT.json -o PNG'.")
    p.add_argument("--quick", action="store_true",
                   help="small frame counts, one round (a CI smoke run, under 90 s)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these benchmarks (exact names, prefixes or globs)")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="also run a sustained 2D lz4 soak for this long")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="rounds to take medians over (default 3, or 1 with --quick)")
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default bench/results/<UTC time>-<commit>.json)")
    p.add_argument("--dir", type=Path, default=None,
                   help="where to write benchmark files (default: a temporary directory on "
                        "the repository's filesystem)")
    p.add_argument("--against", metavar="REV", default=None,
                   help="also run the hot-path scenarios (or the --only selection) over the "
                        "engine of commit REV, from a temporary git worktree, alternating with "
                        "this checkout's each round; reports both and after/before ratios")
    p.add_argument("--engine", metavar="REV", default=None,
                   help="measure the engine of commit REV (from a temporary git worktree) "
                        "instead of this checkout's working tree; with --against, this is "
                        "the 'after' side")
    p.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        cp = argparse.ArgumentParser(prog="python -m bench compare")
        cp.add_argument("a", type=Path)
        cp.add_argument("b", type=Path)
        cargs = cp.parse_args(argv[1:])
        from ._report import compare

        compare(cargs.a, cargs.b)
        return 0
    if argv and argv[0] == "plot":
        pp = argparse.ArgumentParser(prog="python -m bench plot")
        pp.add_argument("result", type=Path)
        pp.add_argument("-o", "--out", type=Path, default=Path("bench/results/throughput.png"))
        pargs = pp.parse_args(argv[1:])
        from ._plot import plot

        plot(pargs.result, pargs.out)
        print(f"wrote {pargs.out}")
        return 0
    if argv and argv[0] == "run":
        argv = argv[1:]
    args = _run_parser().parse_args(argv)
    from ._runner import run, select

    if args.list:
        for name in select(None, 1.0):
            print(name)
        return 0
    if args.against is not None and args.soak > 0:
        raise SystemExit("--soak cannot be combined with --against")
    repeats = args.repeat or (1 if args.quick else 3)
    run(args.quick, repeats, args.only, args.soak, args.out, args.dir, argv,
        against=args.against, engine=args.engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
