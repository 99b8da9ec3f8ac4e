"""Benchmarks: every backend beside the NumPy reference and torch.nn, measured in one run.

A case is one cell, one shape (T, B, I, H; one layer, one direction) and one mode: inference
(forward in eval mode, nothing kept for backward) or a training step (forward + backward, all
gradients). Each backend runs the same case through the layer stack (torch: torch.nn on the
CPU with the same thread count as fastrnn: the CPUs this process may use); the table reports
the median time, GFLOP/s and the speed-up against the reference and against torch measured in
the same run. How a case is measured (:func:`measure_interleaved`): every runner is warmed up
by time, then the runners take turns in blocks of repetitions, their order rotating from round
to round, so that a slow phase of the machine falls on all of them; a block during which other
processes used the CPUs (read from /proc/stat) is thrown away and run again, and the number of
such re-runs is reported. Used by ``fastrnn bench`` and by ``bench/``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import backends, cells
from .atomic import save_figure, write_bytes
from .rnn import RNNBase

CELLS = ("rnn_tanh", "lstm", "gru")
#: with --layernorm: each LayerNorm cell beside its plain cell (torch's side of a LayerNorm
#: case is the per-step composition users write, :mod:`fastrnn.composed`)
LAYERNORM_CELLS = ("lstm", "layernorm_lstm", "gru", "layernorm_gru")
#: name -> (T, B, I, H); "packed" is a ragged batch (lengths 10..100, see :func:`lengths_of`):
#: torch runs it as a PackedSequence, fastrnn with ``lengths``.
SHAPES = {
    "streaming": (200, 1, 32, 64),
    "small": (100, 8, 64, 128),
    "medium": (50, 32, 128, 128),
    "large": (100, 64, 256, 256),
    "packed": (100, 32, 128, 128),
    "standard": (100, 64, 512, 512),  # pytorch's benchmarks/fastrnns default shape
}
#: shapes --quick leaves out (they take seconds per repetition)
SLOW_SHAPES = ("large", "standard")
MODES = ("inference", "training")
#: Pause before each block of repetitions: torch's OpenMP workers spin for milliseconds after
#: its last operation and would slow whichever backend is measured next.
SETTLE_SECONDS = 0.05
#: A block is contended, and run again, when other processes used more CPU time during it than
#: this fraction of its wall time (one core busy elsewhere for 30% of the block).
CONTENTION = 0.3


@dataclass(frozen=True)
class Case:
    cell: str
    shape: str
    mode: str

    @property
    def dims(self) -> tuple[int, int, int, int]:
        return SHAPES[self.shape]

    @property
    def lengths(self) -> np.ndarray | None:
        """Sequence lengths of a ragged case (uniform in [T/10, T], the longest T), else None."""
        if self.shape != "packed":
            return None
        T, B, _, _ = self.dims
        lengths = np.random.default_rng(1).integers(T // 10, T + 1, size=B)
        lengths[0] = T
        return lengths

    @property
    def flops(self) -> float:
        """2*steps*(I+H)*G*H for a forward (steps: valid (t, b) pairs, T*B when not ragged);
        a training step counts 3x that."""
        T, B, I, H = self.dims
        steps = T * B if self.lengths is None else int(self.lengths.sum())
        forward = 2.0 * steps * (I + H) * cells.get(self.cell).gates * H
        return forward * (3 if self.mode == "training" else 1)


@dataclass
class Result:
    cell: str
    shape: str
    mode: str
    backend: str
    median_ms: float
    gflops: float
    vs_reference: float | None = None
    vs_torch: float | None = None
    vs_cudnn: float | None = None
    #: blocks of repetitions thrown away and run again because other processes used the CPUs
    reruns: int = 0


#: Benchmark names that run through torch rather than a fastrnn kernel backend directly.
TORCH_RUNNERS = ("torch", "torch-cuda", "fastrnn.torch", "fastrnn.torch-cuda")


def make_runner(case: Case, backend: str) -> Callable[[], Any]:
    """A zero-argument function that runs `case` once on `backend`: a fastrnn kernel backend,
    "torch" (torch.nn), "torch-cuda" (torch.nn on the GPU: cuDNN), "fastrnn.torch" (the
    torch adapter on the default backend) or "fastrnn.torch-cuda" (the torch adapter on the
    GPU: the CUDA backend on data that stays there). GPU runs end with a synchronisation."""
    T, B, I, H = case.dims
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    if backend in TORCH_RUNNERS:
        return _torch_runner(case, x, dy, backend)
    m = RNNBase(case.cell, I, H, backend=backend, seed=0)
    lengths = case.lengths
    if lengths is not None:
        dy *= np.arange(T)[:, None, None] < lengths[None, :, None]
    if case.mode == "inference":
        m.eval()
        return lambda: m(x, lengths=lengths)

    def step():
        m(x, lengths=lengths)
        m.backward(dy)

    return step


def _torch_runner(case: Case, x: np.ndarray, dy: np.ndarray, backend: str):
    import torch
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    if backend.startswith("torch"):
        source = torch.nn
    else:
        from . import torch as source
    device = "cuda" if backend.endswith("-cuda") else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    T, B, I, H = case.dims
    cell = cells.get(case.cell)
    tx, tdy = torch.from_numpy(x).to(device), torch.from_numpy(dy).to(device)
    lengths = case.lengths
    if cell.norms and source is torch.nn:  # torch has none: the per-step composition
        return _composed_runner(case, tx, tdy, device, sync)
    m = getattr(source, cell.torch_class)(I, H, **dict(cell.torch_args)).to(device)
    # A ragged batch is packed once, outside the timed call, as a data loader's collate
    # function would: the runners time the module, not torch's pack_padded_sequence (about
    # 2 ms of each call at the packed shape, the same for both torch columns)
    inputs = tx
    if lengths is not None:
        packed = pack_padded_sequence(tx, torch.from_numpy(lengths), enforce_sorted=False)
        data = packed.data if case.mode == "inference" else packed.data.requires_grad_(True)
        inputs = PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                packed.unsorted_indices)
        tdy = pack_padded_sequence(tdy, torch.from_numpy(lengths), enforce_sorted=False).data
    else:
        tx.requires_grad_(case.mode == "training")

    def output(y):
        return y if lengths is None else y.data

    if case.mode == "inference":
        m.eval()

        def infer():
            with torch.no_grad():
                m(inputs)
            sync()

        return infer

    def step():
        y, _ = m(inputs)
        output(y).backward(tdy)
        sync()

    return step


def _composed_runner(case: Case, tx, tdy, device: str, sync: Callable[[], None]):
    """torch's side of a LayerNorm case: the cell composed per step under autograd
    (:mod:`fastrnn.composed`), as users write it."""
    import torch

    from .composed import ComposedLayerNorm

    T, B, I, H = case.dims
    m = ComposedLayerNorm(I, H, lstm="c" in cells.get(case.cell).states).to(device)
    lengths = None if case.lengths is None else torch.from_numpy(case.lengths).to(device)
    if case.mode == "inference":
        def infer():
            with torch.no_grad():
                m(tx, lengths)
            sync()

        return infer
    tx.requires_grad_(True)

    def step():
        m(tx, lengths)[0].backward(tdy)
        sync()

    return step


def usable_cpus() -> int:
    """CPUs this process may run on: fastrnn's thread count, and the one torch gets here."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes have used, CPU seconds this process has used), or None
    where /proc/stat is missing. Busy time counts user, nice, system, irq, softirq and steal
    (a hypervisor taking the core is contention too)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    hz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return (user + nice + system + irq + softirq + steal) / hz, own.user + own.system


def contended(before: tuple[float, float] | None, after: tuple[float, float] | None,
              wall: float, threshold: float = CONTENTION, tick: float = 0.01) -> bool:
    """Whether other processes used more than `threshold` x `wall` CPU seconds between the
    two :func:`cpu_seconds` readings, beyond two clock ticks of rounding (the counters move in
    ticks of `tick` seconds); never where they could not be read."""
    if before is None or after is None:
        return False
    others = (after[0] - before[0]) - (after[1] - before[1])
    return others > threshold * wall + 2 * tick


def measure_interleaved(runners: Mapping[str, Callable[[], Any]], min_time: float = 0.5,
                        rounds: int = 5, warmup: float = 0.2, max_reruns: int = 10,
                        settle: float = SETTLE_SECONDS) -> dict[str, tuple[float, int]]:
    """{name: (median seconds of one call, blocks re-run for contention)} of every runner.

    Each runner is first called for `warmup` seconds (JIT, caches, threads awake); then
    `rounds` rounds give each runner a block of about min_time/rounds seconds (at least one
    timed call, after one untimed call that wakes the threads the pause before the block let
    sleep), the runners' order rotating by one each round. A contended block (:func:`contended`)
    is discarded and run again, at most `max_reruns` times per runner.
    """
    names = list(runners)
    for name in names:
        runners[name]()
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            runners[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    reruns = dict.fromkeys(names, 0)
    block = min_time / rounds
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = runners[name]
            while True:
                time.sleep(settle)
                fn()  # untimed: threads that slept through the pause wake up here
                times: list[float] = []
                before, start = cpu_seconds(), time.perf_counter()
                while not times or time.perf_counter() - start < block:
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                wall = time.perf_counter() - start
                if reruns[name] >= max_reruns or not contended(
                        before, cpu_seconds(), wall, tick=1 / os.sysconf("SC_CLK_TCK")):
                    break
                reruns[name] += 1
            samples[name] += times
    return {name: (statistics.median(samples[name]), reruns[name]) for name in names}


def bench_backends() -> list[str]:
    """Available backends, plus "torch" and "fastrnn.torch" when torch is installed."""
    names = [name for name, (ok, _) in backends.available().items() if ok]
    try:
        import torch

        torch.set_num_threads(usable_cpus())
        names += ["torch", "fastrnn.torch"]
        if torch.cuda.is_available():
            names.append("torch-cuda")  # cuDNN
            if "cuda" in names:
                names.append("fastrnn.torch-cuda")  # our kernels, data on the GPU
    except ImportError:
        pass
    return names


def runs(case: Case, name: str) -> bool:
    """Whether `name` has kernels for the case's cell (the CUDA backend has no LayerNorm
    cells yet)."""
    kernel = "cuda" if name == "fastrnn.torch-cuda" else name
    if kernel in TORCH_RUNNERS:
        return True
    return bool(getattr(backends.get(kernel).module, "supports", lambda _: True)(
        cells.get(case.cell)))


def run(cases: Iterable[Case], names: list[str] | None = None, min_time: float = 0.5,
        progress: Callable[[str], None] | None = None, warmup: float = 0.2) -> list[Result]:
    """Measure every case on every backend, interleaved (:func:`measure_interleaved`);
    speed-ups are against the same run's numbers."""
    names = names or bench_backends()
    results: list[Result] = []
    for case in cases:
        if progress:
            progress(f"{case.cell} {case.shape} {case.mode}")
        timed = measure_interleaved({name: make_runner(case, name) for name in names
                                     if runs(case, name)}, min_time=min_time, warmup=warmup)
        row = {name: Result(case.cell, case.shape, case.mode, name, seconds * 1e3,
                            case.flops / seconds / 1e9, reruns=reruns)
               for name, (seconds, reruns) in timed.items()}
        for r in row.values():
            if "reference" in row:
                r.vs_reference = row["reference"].median_ms / r.median_ms
            if "torch" in row:
                r.vs_torch = row["torch"].median_ms / r.median_ms
            if "torch-cuda" in row:
                r.vs_cudnn = row["torch-cuda"].median_ms / r.median_ms
        results.extend(row.values())
    return results


def grid(cells: Iterable[str] = CELLS, shapes: Iterable[str] = tuple(SHAPES),
         modes: Iterable[str] = MODES) -> list[Case]:
    return [Case(c, s, m) for c in cells for s in shapes for m in modes]


def format_table(results: list[Result]) -> str:
    """The results as a text table; a "re-run" column (blocks re-run for contention) appears
    when any were."""
    gpu = any(r.vs_cudnn for r in results)
    rerun = any(r.reruns for r in results)
    w = max([9, *(len(r.cell) + 1 for r in results)])  # the cell column
    header = (f"{'cell':<{w}}{'shape':<10}{'mode':<10}{'backend':<19}{'ms':>10}"
              f"{'GFLOP/s':>9}{'vs ref':>8}{'vs torch':>9}" + (f"{'vs cuDNN':>9}" if gpu else "")
              + (f"{'re-run':>8}" if rerun else ""))
    lines = [header, "-" * len(header)]
    for r in results:
        vs_ref = f"{r.vs_reference:.1f}x" if r.vs_reference else "-"
        vs_torch = f"{r.vs_torch:.2f}x" if r.vs_torch else "-"
        vs_cudnn = (f"{r.vs_cudnn:.2f}x" if r.vs_cudnn else "-") if gpu else ""
        lines.append(f"{r.cell:<{w}}{r.shape:<10}{r.mode:<10}{r.backend:<19}"
                     f"{r.median_ms:>10.3f}{r.gflops:>9.1f}{vs_ref:>8}{vs_torch:>9}"
                     + (f"{vs_cudnn:>9}" if gpu else "") + (f"{r.reruns:>8}" if rerun else ""))
    return "\n".join(lines)


def save_json(results: list[Result], path: str, info: dict[str, Any]) -> None:
    """Write results and machine info to `path` atomically (temp file, then rename)."""
    text = json.dumps({"machine": info, "results": [asdict(r) for r in results]}, indent=2)
    write_bytes(path, text.encode())


_LATENCY_SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
import fastrnn
m = fastrnn.RNNBase({cell!r}, 16, 32, backend={backend!r}, seed=0)
x = np.ones((5, 2, 16), np.float32)
t1 = time.perf_counter()
y, _ = m(x)
m.backward(np.ones_like(y))
print(time.perf_counter() - t1)
"""


def first_call_seconds(backend: str, cell: str = "lstm", cache_dir: str | None = None) -> float:
    """Seconds of the first training step (forward + backward, float32) in a new process.

    With Numba, pass the same fresh `cache_dir` twice: the first call compiles (cold), the
    second loads the compiled kernels from the cache (warm).
    """
    import subprocess
    import sys

    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    script = _LATENCY_SCRIPT.format(cell=cells.get(cell).name, backend=backend)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def plot(results: list[Result], path: str) -> None:
    """Bar chart of the speed-up against the reference, one panel per mode; saved atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'fastrnn[plot]'") from exc
    modes = sorted({r.mode for r in results})
    names = list(dict.fromkeys(r.backend for r in results))
    fig, axes = plt.subplots(len(modes), 1, figsize=(10, 3.5 * len(modes)), squeeze=False)
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        rows = [r for r in results if r.mode == mode]
        labels = list(dict.fromkeys(f"{r.cell}\n{r.shape}" for r in rows))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            speed = {f"{r.cell}\n{r.shape}": r.vs_reference or 0 for r in rows
                     if r.backend == name}
            ax.bar([j + i * width for j in range(len(labels))],
                   [speed.get(label, 0) for label in labels], width, label=name)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(labels))], labels)
        ax.set_yscale("log")
        ax.set_ylabel("speed-up vs reference")
        ax.set_title(mode)
        ax.axhline(1, color="grey", lw=0.5)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
