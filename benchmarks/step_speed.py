"""Step speed: xfer's training step against the plainest correct PyTorch loop.

"xfer" runs ``xfer.train.train_one_epoch``, the code fit runs: the split held on the device as
uint8, a per-epoch permutation, a gather, the uint8 -> float normalisation (and resize, when
the stored size differs) in ``xfer.batches.BatchPrep``, the lr schedule, ``train_step``'s
forward/backward/step and the on-device loss/accuracy sums, with one sync at the end.
"plain" is one preloaded, normalised float batch and ``model(x)``, cross-entropy,
``zero_grad``, ``backward``, ``step``, nothing else. Same model, batch, precision and memory
format; the two alternate in short rounds after a warm-up, so drift in the machine's speed
(turbo, a neighbour's job) hits both alike. Each path's speed is its best round (like
``timeit``: interference only ever slows a round down) and, for comparison, its median round.
The ratio xfer/plain is the overhead of xfer's data path; 1.0 means none.

CUDA graphs (``--graphs``, CUDA only): ``capture`` records one whole training step (forward,
loss, backward, SGD step) with ``torch.cuda.graph`` after 3 warm-up steps on a side stream and
replays it, one launch instead of hundreds; inputs are copied into the graph's static tensors.
The lr is baked in at capture, so graphed cases use a constant lr (the seed grid's schedule).
"xfer" then is xfer's data path (``epoch_order``, gather, ``BatchPrep``) feeding the replayed
step, which xfer's ``train_one_epoch`` does not do yet; "plain" replays it on one batch.
``compile`` wraps the model in ``torch.compile(mode="reduce-overhead")`` (Inductor kernels plus
CUDA graphs for forward and backward, eager optimizer) and runs ``train_one_epoch`` unchanged.
Setup is timed apart from the steady state: "setup s" is the xfer path's model build, capture
or compilation and warm-up steps; against the same case without graphs it gives the steps a
trial must run before the graph pays for itself ("break-even steps"). At the end (matrix runs),
xfer as ``fit`` runs it (bf16, channels_last, no graphs on CUDA) is set against the fastest
plain loop measured at the same model, size and batch: issue 9's ">= 0.95x a tuned loop".

    python benchmarks/step_speed.py            # CPU: resnet18 at 64 px and small_cnn at 32 px, batch 16
    python benchmarks/step_speed.py --smoke    # 3 steps per config, what CI runs
    python benchmarks/step_speed.py --device cuda   # adds resnet50 at 224/256 px, batch 4/16/64,
                                                    # fp32 vs bf16, channels_last on/off, graphs off/capture
    python benchmarks/step_speed.py --device cuda --only resnet50 --graphs off,capture,compile
    python benchmarks/step_speed.py --device cpu --models resnet10 --sizes 32 --batches 4 \
        --precisions fp32,bf16 --layouts nchw,cl   # the matrix's code path, CPU-sized

Runs where torch, torchvision and numpy are all there is: when ptflops (imported by
``xfer.cost``, hence by ``xfer.train``) is missing, a stub stands in for it (see packing.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # packing.py

from packing import install_stubs, missing_modules  # noqa: E402

install_stubs([name for name in missing_modules() if name == "ptflops"])  # xfer.train needs it

from xfer import models  # noqa: E402
from xfer.batches import BatchPrep, batch_slices, epoch_order  # noqa: E402
from xfer.train import TrialConfig, resolve_device, train_one_epoch  # noqa: E402

NUM_CLASSES = 8
GRAPH_MODES = ("off", "capture", "compile")
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture (PyTorch's recipe): cuDNN
                        # autotuning, optimizer state and the allocator settle outside the graph


@dataclass(frozen=True)
class Case:
    model: str
    image_size: int  # px, stored and fed (no resize: both paths feed the same tensor size)
    batch_size: int
    bf16: bool
    channels_last: bool
    graphs: str = "off"  # GRAPH_MODES

    def __str__(self) -> str:
        return (f"{self.model:9s} {self.image_size:3d}px bs{self.batch_size:<3d} "
                f"{'bf16' if self.bf16 else 'fp32'} {'cl ' if self.channels_last else 'nchw'}"
                + ("" if self.graphs == "off" else f" {self.graphs}"))


def matrix(args: argparse.Namespace) -> list[Case]:
    """The issue's matrix: models x sizes x batches x precisions x layouts x graph modes."""
    return [Case(model, size, batch, precision == "bf16", layout == "cl", graphs)
            for model, size, batch, precision, layout, graphs in
            itertools.product(args.models, args.sizes, args.batches, args.precisions, args.layouts,
                              args.graphs)]


def cases(device: torch.device, args: argparse.Namespace | None = None) -> list[Case]:
    """CPU: two small fixed cases, or the matrix when a matrix flag is given. CUDA: two small
    cases in fit's settings, then the matrix (default: the issue's, graphs off and captured)."""
    if device.type == "cpu":
        if args is not None and args.matrix_given:
            return matrix(args)
        return [Case("resnet18", 64, 16, False, False), Case("small_cnn", 32, 16, False, False)]
    small = [Case("resnet18", 64, 16, True, True), Case("small_cnn", 32, 16, True, True)]
    if args is None:  # the matrix, graphs off
        return small + [Case("resnet50", size, batch, bf16, cl) for size, batch, bf16, cl in
                        itertools.product((224, 256), (4, 16, 64), (False, True), (False, True))]
    return small + matrix(args)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(case: Case, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.create_model(case.model, NUM_CLASSES).to(device)
    return model.to(memory_format=torch.channels_last) if case.channels_last else model


class GraphedStep:
    """One training step (forward, cross-entropy, backward, SGD step) captured as a CUDA graph.

    PyTorch's whole-network recipe (CUDA semantics, "CUDA Graphs"): warm-up steps on a side
    stream, gradients set to None so the captured backward allocates them from the graph's
    pool, then one capture. ``replay()`` re-runs every kernel on ``static_x``/``static_y`` with
    one launch; the host work per step drops from hundreds of launches to a copy and a replay.
    The lr and every other optimizer hyperparameter are fixed at capture.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, bf16: bool):
        self.model, self.optimizer, self.bf16 = model, optimizer, bf16
        self.static_x = x.clone()  # keeps x's memory format (channels_last or not)
        self.static_y = y.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.cuda.graph(self.graph):
            self.loss_sum, self.correct = self._step()
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - start

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        # cache_enabled=False: autocast's cast cache must not outlive a capture
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits, _ = models.split_outputs(self.model(self.static_x))
            loss = F.cross_entropy(logits, self.static_y)
        loss.backward()
        self.optimizer.step()
        return loss.detach() * len(self.static_y), (logits.argmax(dim=1) == self.static_y).sum()

    def replay(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        if x is not None:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
        self.graph.replay()


class StepMarked(torch.nn.Module):
    """A ``torch.compile(mode="reduce-overhead")`` model that tells CUDA-graph trees a new
    training step begins at each forward, so the previous step's graph outputs may be reused."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.compiled = torch.compile(model, mode="reduce-overhead")

    def forward(self, x: torch.Tensor):
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


class XferPath:
    """train_one_epoch over the first ``steps`` batches of a uint8 split (graphs off or compile);
    with ``capture``, the same data path feeding a replayed CUDA graph."""

    def __init__(self, case: Case, device: torch.device, steps: int):
        n = steps * case.batch_size  # the most steps one run() takes
        self.images = torch.randint(0, 256, (n, 3, case.image_size, case.image_size),
                                    dtype=torch.uint8, device=device)
        self.labels = torch.randint(0, NUM_CLASSES, (n,), device=device)
        self.model = _model(case, device)
        self.optimizer = torch.optim.SGD(models.trainable_parameters(self.model), lr=0.01, momentum=0.9)
        self.prep = BatchPrep([0.5] * 3, [0.25] * 3, case.image_size, device=device,
                              channels_last=case.channels_last)
        # capture bakes the lr in, so graphed cases train at a constant lr (the seed grid's)
        self.config = TrialConfig(data="(benchmark)", model=case.model, batch_size=case.batch_size,
                                  epochs=1000, lr=0.01,
                                  schedule="constant" if case.graphs == "capture" else "cosine")
        self.amp_dtype = torch.bfloat16 if case.bf16 else None
        self.epoch = 0
        self.graph = None
        if case.graphs == "capture":
            self.graph = GraphedStep(self.model, self.optimizer, self.prep(self.images[:case.batch_size]),
                                     self.labels[:case.batch_size], case.bf16)
        elif case.graphs == "compile":
            self.model = StepMarked(self.model)

    def run(self, steps: int) -> None:
        self.epoch += 1
        n = steps * self.config.batch_size
        if self.graph is None:
            train_one_epoch(self.model, self.optimizer, self.images[:n], self.labels[:n], self.prep,
                            self.config, self.epoch, 0, 1000 * steps, self.amp_dtype)
            return
        # train_one_epoch's loop with the step replayed: same order, gather, prep and sums
        self.model.train()
        order = epoch_order(n, self.config.seed, self.epoch, self.images.device)
        loss_sum = torch.zeros((), device=self.images.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.images.device)
        for batch in batch_slices(n, self.config.batch_size):
            index = order[batch]
            self.graph.replay(self.prep(self.images[index]), self.labels[index])
            loss_sum += self.graph.loss_sum
            correct += self.graph.correct
        loss_sum.item()  # the epoch's one sync, as in train_one_epoch


class PlainPath:
    """The reference loop on one preloaded float batch (graphs: the captured step replayed, or
    the compiled model)."""

    def __init__(self, case: Case, device: torch.device):
        self.x = torch.randn(case.batch_size, 3, case.image_size, case.image_size, device=device)
        if case.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, NUM_CLASSES, (case.batch_size,), device=device)
        self.model = _model(case, device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.bf16 = case.bf16
        self.device = device
        self.graph = None
        if case.graphs == "capture":
            self.graph = GraphedStep(self.model, self.optimizer, self.x, self.y, case.bf16)
        elif case.graphs == "compile":
            self.model = StepMarked(self.model)

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            if self.graph is not None:
                self.graph.replay()
                continue
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, _ = models.split_outputs(self.model(self.x))
                loss = F.cross_entropy(logits, self.y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        _sync(self.device)


def measure(case: Case, device: torch.device, steps: int, warmup: int, rounds: int) -> dict:
    _sync(device)
    start = time.perf_counter()
    xfer = XferPath(case, device, max(steps, warmup))
    xfer.run(warmup)  # warm-up: cuDNN autotuning, oneDNN primitive caches, allocator, compilation
    _sync(device)
    setup_s = time.perf_counter() - start  # model build + capture/compile + warm-up: once per trial
    plain = PlainPath(case, device)
    plain.run(warmup)
    _sync(device)
    seconds: dict[str, list[float]] = {"xfer": [], "plain": []}
    for _ in range(rounds):
        for name, path in (("xfer", xfer), ("plain", plain)):
            _sync(device)
            start = time.perf_counter()
            path.run(steps)
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    best = {name: steps / min(times) for name, times in seconds.items()}
    median = {name: steps / statistics.median(times) for name, times in seconds.items()}
    return {"case": str(case), "model": case.model, "image_size": case.image_size,
            "batch_size": case.batch_size, "precision": "bf16" if case.bf16 else "fp32",
            "layout": "cl" if case.channels_last else "nchw", "graphs": case.graphs,
            "xfer_steps_s": best["xfer"], "plain_steps_s": best["plain"],
            "ratio": best["xfer"] / best["plain"], "median_ratio": median["xfer"] / median["plain"],
            "setup_s": setup_s, "capture_s": xfer.graph.capture_s if xfer.graph else None}


def fit_settings(device: torch.device) -> tuple[bool, bool]:
    """(bf16, channels_last) as xfer.train.fit sets them on this device."""
    return (True, True) if device.type == "cuda" else (False, False)


def summaries(rows: list[dict], device: torch.device) -> str:
    """xfer as fit runs it vs the fastest plain loop measured; graphs' setup and break-even."""
    ok = [r for r in rows if "error" not in r]
    bf16, cl = fit_settings(device)
    fit_precision, fit_layout = ("bf16" if bf16 else "fp32"), ("cl" if cl else "nchw")
    lines = [(f"xfer as fit runs it ({fit_precision}, {fit_layout}, graphs off) vs the fastest plain "
              "loop measured at the same model, size and batch (goal >= 0.95):"),
             (f"{'model, size, batch':24s} {'xfer steps/s':>12s} {'best plain':>10s} "
              f"{'(settings)':24s} {'xfer/best':>9s}")]
    for key in sorted({(r["model"], r["image_size"], r["batch_size"]) for r in ok}):
        group = [r for r in ok if (r["model"], r["image_size"], r["batch_size"]) == key]
        mine = [r for r in group if (r["precision"], r["layout"], r["graphs"]) ==
                (fit_precision, fit_layout, "off")]
        best = max(group, key=lambda r: r["plain_steps_s"])
        settings = f"{best['precision']} {best['layout']} {best['graphs']}"
        xfer_steps = f"{mine[0]['xfer_steps_s']:12.2f}" if mine else f"{'(not run)':>12s}"
        ratio = f"{mine[0]['xfer_steps_s'] / best['plain_steps_s']:9.3f}" if mine else f"{'—':>9s}"
        lines.append(f"{key[0]} {key[1]}px bs{key[2]:<4d}".ljust(24) +
                     f" {xfer_steps} {best['plain_steps_s']:10.2f} ({settings})".ljust(48) + f" {ratio}")
    graphed = [r for r in ok if r["graphs"] != "off"]
    if graphed:
        lines += ["", ("graphs: setup (model build + capture/compilation + warm-up) against the same "
                       "case without graphs; break-even = extra setup / time saved per step"),
                  (f"{'case':40s} {'setup s':>8s} {'eager setup s':>13s} {'capture s':>9s} "
                   f"{'ms/step saved':>13s} {'break-even steps':>16s}")]
        for r in graphed:
            eager = [e for e in ok if e["graphs"] == "off" and
                     (e["model"], e["image_size"], e["batch_size"], e["precision"], e["layout"]) ==
                     (r["model"], r["image_size"], r["batch_size"], r["precision"], r["layout"])]
            if not eager:
                lines.append(f"{r['case']:40s} {r['setup_s']:8.2f} {'(not run)':>13s}")
                continue
            saved_ms = 1000 / eager[0]["xfer_steps_s"] - 1000 / r["xfer_steps_s"]
            extra = r["setup_s"] - eager[0]["setup_s"]
            breakeven = (f"{max(0.0, extra) / saved_ms * 1000:16.0f}" if saved_ms > 0
                         else f"{'never':>16s}")
            capture = f"{r['capture_s']:9.2f}" if r["capture_s"] is not None else f"{'—':>9s}"
            lines.append(f"{r['case']:40s} {r['setup_s']:8.2f} {eager[0]['setup_s']:13.2f} {capture} "
                         f"{saved_ms:13.2f} {breakeven}")
        lines.append("(a seed-grid trial at n 100 and batch 4 trains 84 images = 21 steps per epoch: "
                     "210-1,050 steps in 10-50 epochs)")
    return "\n".join(lines)


def _list(kind):
    def parse(text: str) -> list:
        values = [kind(v) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return values
    return parse


def _fail(message: str) -> None:
    """A usage error: one line on stderr, exit code 2."""
    print(f"step_speed.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path per round (default: 5)")
    parser.add_argument("--rounds", type=int, default=12, help="alternating timed rounds (default: 12)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per path first (default: 5)")
    parser.add_argument("--smoke", action="store_true", help="3 steps, 1 round, 1 warm-up step: checks it runs")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this text")
    matrix_flags = parser.add_argument_group(
        "the matrix (CUDA: runs by default; CPU: runs instead of the two fixed cases when any of "
        "these is given)")
    matrix_flags.add_argument("--models", type=_list(str), default=None, help="default: resnet50")
    matrix_flags.add_argument("--sizes", type=_list(int), default=None, help="px (default: 224,256)")
    matrix_flags.add_argument("--batches", type=_list(int), default=None, help="default: 4,16,64")
    matrix_flags.add_argument("--precisions", type=_list(str), default=None,
                              help="fp32 and/or bf16 (autocast) (default: fp32,bf16)")
    matrix_flags.add_argument("--layouts", type=_list(str), default=None,
                              help="nchw and/or cl (channels_last) (default: nchw,cl)")
    matrix_flags.add_argument("--graphs", type=_list(str), default=None,
                              help=f"{', '.join(GRAPH_MODES)}; capture and compile need CUDA "
                                   "(default: CUDA off,capture; CPU off)")
    parser.add_argument("--json-out", default=None, help="write every row as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.warmup = 3, 1, 1
    for name, valid in (("precisions", ("fp32", "bf16")), ("layouts", ("nchw", "cl")),
                        ("graphs", GRAPH_MODES)):
        bad = [v for v in getattr(args, name) or [] if v not in valid]
        if bad:
            _fail(f"--{name} {','.join(bad)} is not valid (valid: {', '.join(valid)})")
    if args.models:
        bad = [m for m in args.models if m not in models.MODEL_NAMES]
        if bad:
            _fail(f"--models {','.join(bad)} is not valid (valid: {', '.join(models.MODEL_NAMES)})")
    try:
        device = resolve_device(args.device)
    except Exception as exc:  # xfer's UsageError: one line, exit 2
        _fail(str(exc))
    cuda = device.type == "cuda"
    if not cuda and any(g != "off" for g in args.graphs or []):
        _fail(f"--graphs {','.join(args.graphs)}: CUDA graphs need a CUDA device; on CPU only "
              "'off' runs (run this on a GPU, or drop --graphs)")
    args.matrix_given = any(getattr(args, name) is not None for name in
                            ("models", "sizes", "batches", "precisions", "layouts", "graphs"))
    args.models = args.models or ["resnet50"]
    args.sizes = args.sizes or [224, 256]
    args.batches = args.batches or [4, 16, 64]
    args.precisions = args.precisions or ["fp32", "bf16"]
    args.layouts = args.layouts or ["nchw", "cl"]
    args.graphs = args.graphs or (["off", "capture"] if cuda else ["off"])
    if cuda:
        torch.backends.cudnn.benchmark = True  # as fit does
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"step_speed: torch {torch.__version__}, {device} ({name}), "
          f"{args.steps} steps x {args.rounds} rounds after {args.warmup} warm-up")
    selected = [c for c in cases(device, args) if not args.only or args.only in str(c)]
    width = max([32] + [len(str(c)) for c in selected])
    with_setup = any(c.graphs != "off" for c in selected)
    print(f"{'case':{width}s} {'xfer steps/s':>12s} {'plain steps/s':>13s} "
          + (f"{'setup s':>8s} " if with_setup else "") + f"{'median ratio':>12s} {'xfer/plain':>10s}")
    rows = []
    for case in selected:
        try:
            row = measure(case, device, args.steps, args.warmup, args.rounds)
        except Exception as exc:  # e.g. out of memory, or a capture/compile failure: report, go on
            message = (str(exc).strip().splitlines() or [""])[0][:160]
            rows.append({"case": str(case), "error": f"{type(exc).__name__}: {message}"})
            print(f"{case!s:{width}s} failed: {rows[-1]['error']}", flush=True)
        else:
            rows.append(row)
            print(f"{row['case']:{width}s} {row['xfer_steps_s']:12.2f} {row['plain_steps_s']:13.2f} "
                  + (f"{row['setup_s']:8.2f} " if with_setup else "")
                  + f"{row['median_ratio']:12.3f} {row['ratio']:10.3f}", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    if cuda or args.matrix_given:
        print()
        print(summaries(rows, device))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({
            "benchmark": "step_speed", "device": str(device), "device_name": name,
            "torch": torch.__version__, "steps": args.steps, "rounds": args.rounds,
            "warmup": args.warmup, "rows": rows}, indent=2))
        print(f"wrote {args.json_out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
