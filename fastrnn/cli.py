"""The ``fastrnn`` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from . import cells


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
    known = [*info["backends"], *bench.TORCH_RUNNERS]
    for name in args.backends or []:
        if name not in known:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(known)}")
    shapes = args.shapes
    if shapes is None:  # --quick leaves out the slow shapes unless they are asked for
        shapes = [s for s in bench.SHAPES if not (args.quick and s in bench.SLOW_SHAPES)]
    chosen = args.cells or (bench.LAYERNORM_CELLS if args.layernorm else bench.CELLS)
    cases = bench.grid(chosen, shapes, args.modes)
    blas = ", ".join(f"{lib['internal_api']} {lib['architecture']} x{lib['num_threads']}"
                     for lib in info["blas"])
    cpu = info["cpu"]
    print(f"fastrnn {info['fastrnn']} bench: {len(cases)} cases on {cpu['model']} "
          f"({' '.join(cpu['isa']) or 'no SIMD flags read'}), {bench.usable_cpus()} threads "
          f"for fastrnn and torch; BLAS: {blas}", flush=True)
    progress = None
    if sys.stdout.isatty():
        def progress(s: str) -> None:
            print(f"  running {s:<50}", end="\r", flush=True)
    results = bench.run(cases, args.backends, min_time=0.05 if args.quick else args.min_time,
                        progress=progress, warmup=0.05 if args.quick else 0.2)
    if progress:
        print(" " * 60, end="\r")
    print(bench.format_table(results))
    reruns = sum(r.reruns for r in results)
    print(f"contention: {reruns} block(s) re-run because other processes used the CPUs"
          + ("" if bench.cpu_seconds() else " (not measurable here: no /proc/stat)"))
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
    charlm = []
    if args.charlm:
        from .charlm_bench import compare

        print("\nchar-LM training step, fastrnn's model API vs the same model in torch "
              "(same initial weights, same batches, interleaved blocks):")
        for cell in ("lstm", "gru"):
            charlm.append(compare(cell))
            print(f"  {charlm[-1]}")
    steps: dict = {}
    if args.steps:
        from . import step_bench

        print("\nsingle steps: fastrnn's cells beside torch.nn's (I = H, float32; decoder50: "
              "50 steps forward, then backward through them):")
        cell_results = step_bench.cells(min_time=0.05 if args.quick else args.min_time,
                                        warmup=0.05 if args.quick else 0.2, progress=progress)
        if progress:
            print(" " * 60, end="\r")
        print(step_bench.format_cells(cell_results))
        sampled = step_bench.sampling(min_time=0.5 if args.quick else 2.0)
        print(sampled)
        steps = {"cells": [vars(r) for r in cell_results], "sampling": vars(sampled)}
    conv: list = []
    if args.convlstm:
        from . import conv_bench

        conv = conv_bench.compare(min_time=0.3 if args.quick else 2 * args.min_time,
                                  warmup=0.1 if args.quick else 0.3)
        print("\n" + conv_bench.format_results(conv))
    if args.json:
        bench.save_json(results, args.json, {**info, "first_call": latency,
                                             "charlm": [vars(c) for c in charlm],
                                             "steps": steps,
                                             "convlstm": [vars(r) for r in conv]})
        print(f"saved {args.json}")
    if args.plot:
        bench.plot(results, args.plot)
        print(f"saved {args.plot}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int_from(minimum: int):
    """An argparse type: an integer >= minimum, or an error naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int, _nonnegative_int = _int_from(1), _int_from(0)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cell", choices=sorted({*_STATE_CELLS, "rnn"}), default="lstm")
    p.add_argument("--layers", type=_positive_int, default=1)
    p.add_argument("--hidden", type=_positive_int, default=256)
    p.add_argument("--embed", type=_positive_int, default=48)
    p.add_argument("--dropout", type=float, default=0.0, help="between layers (needs --layers > 1)")
    p.add_argument("--backend", help="kernel backend (default: the fastest available)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace, vocab: str):
    from .charlm import Config

    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    return Config(vocab=vocab, cell=args.cell, hidden=args.hidden, layers=args.layers,
                  embed=args.embed, dropout=args.dropout, seed=args.seed)


def _demo(args: argparse.Namespace) -> int:
    from . import charlm

    _refuse_to_replace(args.checkpoint, False, args.force)
    cfg = _config(args, "")
    overrides = {k: getattr(cfg, k) for k in ("cell", "hidden", "layers", "embed", "dropout")}
    charlm.demo(args.minutes, overrides, progress=not args.no_progress,
                checkpoint=args.checkpoint, overwrite=args.force, backend=args.backend,
                seed=args.seed)
    if args.checkpoint:
        print(f"\nsaved {args.checkpoint}; sample more with: fastrnn generate --checkpoint "
              f"{args.checkpoint}")
    return 0


def _refuse_to_replace(path: str | None, resume: bool, force: bool) -> None:
    """The CLI's words for fit's rule: an existing file is resumed or replaced on request."""
    if path and os.path.exists(path) and not (resume or force):
        raise FileExistsError(f"{path} exists: --resume continues that run, --force replaces "
                              "the file (never done without it)")


def _train(args: argparse.Namespace) -> int:
    from . import charlm

    _refuse_to_replace(args.checkpoint, args.resume, args.force)
    text = charlm.read_text(args.text)
    cfg = _config(args, charlm.Vocab.from_text(text).chars)
    _, cfg, history, h_unigram = charlm.train(
        text, cfg, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
        epochs=args.epochs, time_budget=args.minutes * 60 if args.minutes else None,
        checkpoint=args.checkpoint, resume=args.resume, overwrite=args.force,
        progress=not args.no_progress, backend=args.backend)
    val, uniform = history.val_loss[-1], math.log(len(cfg.vocab))
    print(f"validation loss {val:.3f} nats/char, unigram entropy {h_unigram:.3f}; saved "
          f"{args.checkpoint}")
    if len(cfg.vocab) > 1 and not val < uniform:
        print(f"fastrnn train: error: the run diverged or did not learn: validation loss "
              f"{val:.4g} nats/char is no better than guessing uniformly among "
              f"{len(cfg.vocab)} characters ({uniform:.3f}); lower --lr or train longer",
              file=sys.stderr)
        return 1
    return 0


def _generate(args: argparse.Namespace) -> int:
    from . import charlm

    model, cfg = charlm.load(args.checkpoint, backend=args.backend)
    text = charlm.sample(model, cfg, prime=args.prime, length=args.length,
                         temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    print(args.prime + text)
    return 0


#: the cells whose output is their hidden state (the char-LM and the benchmark grid build
#: them with a hidden size only; a Jordan network also needs its output size)
_STATE_CELLS = [name for name, cell in cells.CELLS.items() if not cell.output_act]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, backends, BLAS and threads of this machine")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_info)

    from .bench import MODES, SHAPES

    bench = sub.add_parser("bench", help="time every backend against the reference and torch")
    bench.add_argument("--cells", nargs="+", choices=_STATE_CELLS,
                       help="default: rnn_tanh lstm gru (--layernorm: lstm layernorm_lstm gru "
                            "layernorm_gru)")
    bench.add_argument("--layernorm", action="store_true",
                       help="the LayerNorm cells beside their plain cells; torch's side is the "
                            "cell composed per step under autograd (fastrnn/composed.py)")
    bench.add_argument("--shapes", nargs="+", choices=list(SHAPES),
                       help="streaming (T=200,B=1,I=32,H=64), small (100,8,64,128), "
                            "medium (50,32,128,128), "
                            "large (100,64,256,256), packed (100,32,128,128, ragged), "
                            "standard (100,64,512,512: pytorch's fastrnns default); "
                            "default: all (--quick: all but large and standard)")
    bench.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    bench.add_argument("--backends", nargs="+", metavar="NAME",
                       help="backends to time (default: every available one, and torch)")
    bench.add_argument("--min-time", type=float, default=0.5,
                       help="seconds of timed repeats per backend and case, in 5 interleaved "
                            "blocks (default 0.5), after 0.2 s of warm-up")
    bench.add_argument("--quick", action="store_true",
                       help="short measurements, no large or standard shape (about a minute)")
    bench.add_argument("--latency", action="store_true",
                       help="also time the first call in a new process (cold and warm cache)")
    bench.add_argument("--charlm", action="store_true",
                       help="also time the char-LM training step against the same model in "
                            "torch (needs torch)")
    bench.add_argument("--steps", action="store_true",
                       help="also time single steps: fastrnn's cells beside torch.nn's, and "
                            "the char-LM sampler's characters/s")
    bench.add_argument("--convlstm", action="store_true",
                       help="also ConvLSTM: fastrnn's kernels beside the per-step torch module")
    bench.add_argument("--json", metavar="FILE", help="save results and machine info as JSON")
    bench.add_argument("--plot", metavar="FILE", help="save a chart (needs matplotlib)")
    bench.set_defaults(run=_bench)

    demo = sub.add_parser("demo", help="train a char-level LSTM on Python's help topics, "
                                       "then generate text")
    demo.add_argument("--minutes", type=_positive_float, default=2.0,
                      help="training budget (default 2)")
    demo.add_argument("--checkpoint", help="also save the model here")
    demo.add_argument("--force", action="store_true",
                      help="replace whatever file is at --checkpoint (never done without it)")
    _model_options(demo)
    demo.set_defaults(run=_demo)

    train = sub.add_parser("train", help="train a char-level language model on a text file")
    train.add_argument("--text", required=True, help="a UTF-8 text file")
    train.add_argument("--checkpoint", default="charlm.npz", help="where to save (each epoch)")
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint (a checkpoint of the same settings "
                            "and corpus)")
    train.add_argument("--force", action="store_true",
                       help="replace whatever file is at --checkpoint (never done without it)")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--minutes", type=_positive_float, help="stop after this long")
    train.add_argument("--seq-len", type=_positive_int, default=64)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--lr", type=_positive_float, default=3e-3)
    _model_options(train)
    train.set_defaults(run=_train)

    gen = sub.add_parser("generate", help="sample text from a trained char-LM checkpoint")
    gen.add_argument("--checkpoint", required=True)
    gen.add_argument("--temperature", type=_positive_float, default=0.5)
    gen.add_argument("--prime", default="The ")
    gen.add_argument("--length", type=_positive_int, default=300)
    gen.add_argument("--top-k", type=_positive_int)
    gen.add_argument("--seed", type=_nonnegative_int)
    gen.add_argument("--backend")
    gen.set_defaults(run=_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, KeyError, FloatingPointError, ImportError) as exc:
        print(f"fastrnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"fastrnn {args.command}: error: not enough memory for this model and batch "
              "(a smaller --hidden, --layers or --batch-size needs less)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastrnn {args.command}: interrupted", file=sys.stderr)
        return 130
