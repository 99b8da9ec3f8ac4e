"""The ``fastrnn`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args: argparse.Namespace) -> int:
    from .sysinfo import collect, format_report

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from . import bench
    from .sysinfo import collect

    info = collect()
    for name in args.backends or []:
        if name != "torch" and name not in info["backends"]:
            raise ValueError(f"unknown backend {name!r}; known: torch, "
                             f"{', '.join(info['backends'])}")
    cases = bench.grid(args.cells, args.shapes, args.modes)
    blas = ", ".join(f"{lib['internal_api']} {lib['architecture']} x{lib['num_threads']}"
                     for lib in info["blas"])
    print(f"fastrnn {info['fastrnn']} bench: {len(cases)} cases, BLAS: {blas}, "
          f"{info['cpu_count']} CPUs", flush=True)
    progress = None
    if sys.stdout.isatty():
        def progress(s: str) -> None:
            print(f"  running {s:<50}", end="\r", flush=True)
    results = bench.run(cases, args.backends, min_time=0.05 if args.quick else args.min_time,
                        progress=progress)
    if progress:
        print(" " * 60, end="\r")
    print(bench.format_table(results))
    latency = {}
    if args.latency:
        names = [n for n in ("cython", "numba") if info["backends"][n]["available"]]
        with tempfile.TemporaryDirectory() as cache:
            for name in names:
                latency[f"{name}_cold_s"] = bench.first_call_seconds(name, cache_dir=cache)
                latency[f"{name}_warm_s"] = bench.first_call_seconds(name, cache_dir=cache)
        print("\nfirst LSTM training step in a new process (cold: empty Numba cache; warm: "
              "second process):")
        for name in names:
            print(f"  {name:<7} cold {latency[f'{name}_cold_s'] * 1e3:9.1f} ms   "
                  f"warm {latency[f'{name}_warm_s'] * 1e3:7.1f} ms")
    if args.json:
        bench.save_json(results, args.json, {**info, "first_call": latency})
        print(f"saved {args.json}")
    if args.plot:
        bench.plot(results, args.plot)
        print(f"saved {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, backends, BLAS and threads of this machine")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_info)

    from .bench import CELLS, MODES, SHAPES

    bench = sub.add_parser("bench", help="time every backend against the reference and torch")
    bench.add_argument("--cells", nargs="+", choices=["rnn_tanh", "rnn_relu", "lstm", "gru"],
                       default=list(CELLS))
    bench.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES),
                       help="streaming (T=200,B=1,I=32,H=64), medium (50,32,128,128), "
                            "large (100,64,256,256)")
    bench.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    bench.add_argument("--backends", nargs="+", metavar="NAME",
                       help="backends to time (default: every available one, and torch)")
    bench.add_argument("--min-time", type=float, default=0.5,
                       help="seconds of repeats per measurement (default 0.5)")
    bench.add_argument("--quick", action="store_true", help="short measurements (< 1 min)")
    bench.add_argument("--latency", action="store_true",
                       help="also time the first call in a new process (cold and warm cache)")
    bench.add_argument("--json", metavar="FILE", help="save results and machine info as JSON")
    bench.add_argument("--plot", metavar="FILE", help="save a chart (needs matplotlib)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"fastrnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
