"""Packing: aggregate training images/s against trials per device (k concurrent `xfer train`s).

A trial of the seed grid at batch 4 or 16 is expected to leave most of an H100 idle: each step
is a few hundred small kernels, launched one at a time by one Python thread. Running k trials at
once on one GPU (k processes, one CUDA context each) can overlap their launch gaps. This benchmark
measures how far that goes: for each k and batch size it starts k identical
``python -m xfer.cli train`` processes together, on a small generated dataset, and reports

- steady aggregate images/s: training images per second of wall while all k train at once,
  from the epoch lines each process prints (timestamped here as they arrive) and the
  cumulative ``images_processed`` of its ``--json-out``; the first epoch of each process
  (cuDNN autotuning, allocator warm-up) and the start-up/tail where fewer than k run are
  left out. Validation time is inside the window, as it is inside a real trial.
- per-trial images/s: ``images_processed / train_time_s`` of each process (training only),
  the mean over the k: what each trial's own speed drops to when packed.
- end-to-end images/s: all training images / (last exit - first start), process start-up
  (interpreter, imports, CUDA context, data load, model build) included.
- on CUDA: the GPU's utilisation (nvidia-smi's "percent of time a kernel ran", a coarse
  measure, not SM occupancy) and peak memory used, sampled every 0.5 s.

On CUDA all k processes share the one visible GPU; each gets ``cores // k`` CPU threads. On CPU
the k processes split the cores the same way (OMP_NUM_THREADS), so the total stays fixed.

    python benchmarks/packing.py                 # CUDA: resnet50, 256 px, k 1,2,4,8, batch 4 and 16
    python benchmarks/packing.py --device cpu    # CPU: resnet10, 64 px, k 1,2,4, batch 4 and 16
    python benchmarks/packing.py --smoke         # CPU, small_cnn at 32 px, k 1,2, batch 16: what CI runs

The GPU machine has torch, torchvision and numpy only. Two imports of xfer's fail there:
``xfer.cost`` imports ptflops (so ``xfer.train`` does), and ``xfer.cli`` builds its parser with
``xfer.data.pdf.families``, which imports scipy. When either package is missing, the trials
start through a bootstrap (``python -c``) that puts a stub module in its place and then calls
``xfer.cli.main`` with the same arguments: the stub ptflops counts 0 MACs (``macs_per_image``
reads 0 in the results), the stub scipy has no functions (only generating PDF plots uses
them). Everything measured is the real ``xfer train``. The output says when stubs were used.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # xfer from this checkout (the GPU machine has it uninstalled)
NUM_CLASSES = 8  # the seed preset has eight density families
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\s")  # xfer.train.print_report's per-epoch line
RESULT_KEYS = ("images_processed", "train_time_s", "wall_time_s", "n_train", "epochs_run",
               "macs_per_image", "device")

STUBBABLE = ("ptflops", "scipy")


def install_stubs(names: list[str]) -> None:
    """Put stand-ins for ``names`` (a subset of STUBBABLE) into ``sys.modules``, so that xfer's
    imports of them succeed on a machine without them (see the module docstring)."""
    import importlib.machinery
    import types

    def stub(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs, __benchmark_stub__=True)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec needs one
        sys.modules[name] = module
        return module

    for name in names:
        if name == "ptflops":  # xfer.cost's MAC counter: counts 0 MACs
            stub("ptflops", get_model_complexity_info=lambda *args, **kwargs: (0, 0))
        elif name == "scipy":  # xfer.data.pdf.families, imported for the CLI's preset names
            stub("scipy", special=stub("scipy.special"))
        else:
            raise ValueError(f"no stub for {name!r} (stubbable: {', '.join(STUBBABLE)})")


# A trial with stubs: `python -c STUB_BOOTSTRAP MISSING train FLAGS...`, MISSING comma-separated.
STUB_BOOTSTRAP = f"""\
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from packing import install_stubs
install_stubs([name for name in sys.argv[1].split(",") if name])
from xfer.cli import main
sys.exit(main(sys.argv[2:]))
"""


def missing_modules() -> list[str]:
    """Modules xfer's trial imports that this Python lacks (stubbed in the trials)."""
    return [name for name in STUBBABLE if importlib.util.find_spec(name) is None]


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cuda_available() -> bool:
    """Asks the driver for a device count; creates no CUDA context in this process."""
    import torch

    return torch.cuda.is_available()


def fail(message: str) -> None:
    """A usage error: one line on stderr, exit code 2."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def resolve_device(name: str) -> str:
    if name not in ("auto", "cpu", "cuda"):
        fail(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        fail("--device cuda: CUDA is not available on this machine (valid here: auto, cpu)")
    return name


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


# --- data and weights, written with numpy and torch only (no `xfer data pdf`: it needs scipy
# and matplotlib, which the GPU machine lacks) ------------------------------------------------

def write_dataset(out: Path, n: int, image_size: int, *, seed: int = 0) -> Path:
    """``n`` images in xfer's packed layout (what ``xfer.data.tensors.load_packed`` reads):
    noise plus a class-coloured square at a class-dependent place, classes cycled so every
    prefix is balanced. Learnable, so training does real work; its content does not change
    the speed of a step. Written in chunks into a memory map (10,000 at 256 px: 1.97 GB).
    An existing dataset with the same n, size and seed is reused."""
    out = Path(out)
    meta = {"kind": "benchmark", "preset": "blocks", "seed": seed, "n": n, "image_size": image_size,
            "families": [f"class{c}" for c in range(NUM_CLASSES)], "generator_version": "benchmark"}
    if (out / "dataset.json").is_file() and json.loads((out / "dataset.json").read_text()) == meta:
        return out
    (out / "packed").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(100, 256, size=(NUM_CLASSES, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    images = np.lib.format.open_memmap(out / "packed" / "images_u8.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, image_size, image_size, 3))
    side, half = max(1, image_size // 3), image_size // 2
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        chunk = rng.integers(0, 60, size=(stop - start, image_size, image_size, 3), dtype=np.uint8)
        for i, label in enumerate(labels[start:stop]):
            row = (label // 2) % 2 * half + rng.integers(0, max(1, half - side + 1))
            col = label % 2 * half + rng.integers(0, max(1, half - side + 1))
            chunk[i, row:row + side, col:col + side] = colours[label]
        images[start:stop] = chunk
    images.flush()
    del images
    np.save(out / "packed" / "labels_i64.npy", labels)
    (out / "dataset.json").write_text(json.dumps(meta))  # last: marks the folder complete
    return out


def write_standin_weights(path: Path, model: str) -> Path:
    """Random weights for ``model`` in xfer's weights envelope, with ImageNet's normalisation,
    standing in for ImageNet's (the GPU machine is offline): ``--init pretrained --weights
    FILE`` then takes the exact code path of pretrained trials (read, sha256, CRC check, load,
    dataset statistics skipped) at the same compute per step."""
    if path.is_file():
        return path
    import torch

    from xfer import models
    from xfer.weights import IMAGENET_MEAN, IMAGENET_STD, save_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        net = models.create_model(model, NUM_CLASSES)
    save_weights(path, model, net.state_dict(), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 source_task={"benchmark": "random weights standing in for ImageNet's"})
    return path


# --- launching trials -------------------------------------------------------------------------

@dataclass
class Trial:
    """One `xfer train` process: its name and its flags after `train`."""
    name: str
    flags: list[str]
    cost: float = 1.0  # relative expected duration; longer trials start first


@dataclass
class Finished:
    name: str
    returncode: int
    start_s: float  # since the batch of trials began
    end_s: float
    epoch_end_s: dict[int, float] = field(default_factory=dict)  # epoch -> when its line arrived
    result: dict = field(default_factory=dict)  # RESULT_KEYS of --json-out, plus the history
    error: str = ""

    @property
    def proc_wall_s(self) -> float:
        return self.end_s - self.start_s

    def cumulative_images(self) -> list[tuple[float, int]]:
        """(time, training images done) at each epoch line, from t = the first epoch's end."""
        by_epoch = {h["epoch"]: h["images_processed"] for h in self.result.get("history", [])}
        return [(t, by_epoch[e]) for e, t in sorted(self.epoch_end_s.items()) if e in by_epoch]

    def row(self) -> dict:
        return {"name": self.name, "returncode": self.returncode, "start_s": self.start_s,
                "end_s": self.end_s, "proc_wall_s": self.proc_wall_s,
                "epoch_end_s": {str(k): v for k, v in self.epoch_end_s.items()},
                "result": self.result, "error": self.error}


def trial_command(flags: list[str], stubs: list[str]) -> list[str]:
    if stubs:
        return [sys.executable, "-c", STUB_BOOTSTRAP, ",".join(stubs), "train", *flags]
    return [sys.executable, "-m", "xfer.cli", "train", *flags]


@dataclass
class _Running:
    trial: Trial
    proc: subprocess.Popen
    start_s: float
    epochs: dict[int, float]  # filled by ``reader`` as epoch lines arrive
    reader: threading.Thread
    json_out: Path
    stderr: Path


def run_trials(trials: list[Trial], k: int, *, workdir: Path, threads: int, stubs: list[str],
               log=print, verbose: bool = False) -> list[Finished]:
    """Run ``trials`` as `xfer train` processes, at most ``k`` at once, longest (``cost``) first.
    Each prints its epochs to a pipe read by a thread here, which timestamps them, and writes
    ``--json-out``. A failed trial is recorded with the last line of its stderr, never raised.
    If this is interrupted (Ctrl-C, a suite's timeout), the running trials are killed. With
    ``verbose``, one line per finished trial as it finishes."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    pending = sorted(trials, key=lambda t: -t.cost)
    running: list[_Running] = []
    done: list[Finished] = []
    t0 = time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < k:
                running.append(_launch(pending.pop(0), workdir, env, stubs, t0))
            time.sleep(0.02)
            for entry in [r for r in running if r.proc.poll() is not None]:
                running.remove(entry)
                done.append(_collect(entry, time.perf_counter() - t0, log, verbose))
    finally:  # leave no trial holding the device
        for entry in running:
            entry.proc.kill()
            entry.proc.wait()
    return done


def _launch(trial: Trial, workdir: Path, env: dict, stubs: list[str], t0: float) -> _Running:
    json_out, stderr = workdir / f"{trial.name}.json", workdir / f"{trial.name}.stderr"
    json_out.unlink(missing_ok=True)
    with open(stderr, "w") as err_file:
        proc = subprocess.Popen(trial_command([*trial.flags, "--json-out", str(json_out)], stubs),
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err_file,
                                text=True, bufsize=1)
    epochs: dict[int, float] = {}

    def read_epochs() -> None:
        for line in proc.stdout:
            match = EPOCH_LINE.match(line)
            if match:
                epochs[int(match.group(1))] = time.perf_counter() - t0
        proc.stdout.close()

    reader = threading.Thread(target=read_epochs, daemon=True)
    reader.start()
    return _Running(trial, proc, time.perf_counter() - t0, epochs, reader, json_out, stderr)


def _collect(entry: _Running, end_s: float, log, verbose: bool) -> Finished:
    entry.reader.join(timeout=10)
    finished = Finished(entry.trial.name, entry.proc.returncode, entry.start_s, end_s,
                        dict(entry.epochs))
    if entry.proc.returncode == 0 and entry.json_out.is_file():
        full = json.loads(entry.json_out.read_text())
        finished.result = {key: full[key] for key in RESULT_KEYS}
        finished.result["history"] = [{key: h[key] for key in ("epoch", "epoch_time_s", "images_processed")}
                                      for h in full["history"]]
        finished.result["milestones"] = {  # --epoch-milestones: the shorter budgets' results
            epoch: {key: entry[key] for key in ("epochs_run", "train_time_s", "wall_time_s", "test_accuracy")}
            for epoch, entry in full.get("milestones", {}).items()}
        if verbose:
            log(f"  {entry.trial.name}: {finished.proc_wall_s:.1f} s, "
                f"{finished.result['images_processed']} training images", flush=True)
    else:
        lines = entry.stderr.read_text(errors="replace").strip().splitlines()
        finished.error = lines[-1] if lines else f"exit {entry.proc.returncode}, no stderr"
        log(f"  {entry.trial.name} failed (exit {entry.proc.returncode}): {finished.error}", flush=True)
    return finished


def steady_images_per_s(finished: list[Finished]) -> tuple[float, float]:
    """(aggregate training images/s, window length s) over the window where every trial is past
    its first epoch and none has printed its last: each trial's cumulative images, interpolated
    linearly between its epoch lines, at the window's ends. (nan, 0) when there is no such
    window (too few epochs, or the trials did not overlap)."""
    curves = [f.cumulative_images() for f in finished]
    if not curves or any(len(c) < 2 for c in curves):
        return float("nan"), 0.0
    start, end = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    if end <= start:
        return float("nan"), 0.0
    images = sum(np.interp(end, *zip(*c)) - np.interp(start, *zip(*c)) for c in curves)
    return float(images / (end - start)), end - start


class GpuSampler:
    """Samples the GPU's utilisation (%) and memory used (MiB) every ``period_s`` in a thread,
    with nvidia-smi when it is on PATH, else torch.cuda.utilization / memory_usage (pynvml).
    Inactive (no samples) without either; creates no CUDA context."""

    def __init__(self, enabled: bool, period_s: float = 0.5):
        self.enabled, self.period_s = enabled, period_s
        self.samples: list[tuple[float, float]] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not enabled:
            return
        index = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        if shutil.which("nvidia-smi"):
            self.source = "nvidia-smi"
            command = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                       "--format=csv,noheader,nounits", "-i", index]

            def read() -> tuple[float, float]:
                out = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False).stdout
                util, mem = out.strip().splitlines()[0].split(",")
                return float(util), float(mem)
        else:
            import torch

            def read() -> tuple[float, float]:
                return float(torch.cuda.utilization()), float("nan")
            try:
                read()
                self.source = "torch.cuda.utilization"
            except Exception:  # no pynvml/amdsmi: nothing to sample with
                self.enabled = False
                return
        self._read = read

    def __enter__(self) -> "GpuSampler":
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.samples.append(self._read())
            except Exception:  # a slow or failed query loses one sample, not the benchmark
                pass

    def summary(self) -> dict:
        if not self.samples:
            return {"source": self.source, "samples": 0, "util_mean_pct": None, "mem_peak_mib": None}
        util = [u for u, _ in self.samples]
        mem = [m for _, m in self.samples if not math.isnan(m)]
        return {"source": self.source, "samples": len(self.samples),
                "util_mean_pct": float(np.mean(util)), "util_median_pct": float(np.median(util)),
                "mem_peak_mib": float(max(mem)) if mem else None}


# --- the benchmark ----------------------------------------------------------------------------

def measure(k: int, batch: int, args, data: Path, workdir: Path, stubs: list[str]) -> dict:
    threads = max(1, cpu_cores() // k)
    trials = [Trial(f"k{k}-bs{batch}-{i}", ["--data", str(data), "--model", args.model,
                                            "--init", "scratch", "--epochs", str(args.epochs),
                                            "--batch-size", str(batch), "--lr", "0.01",
                                            "--device", args.device, "--seed", str(i)])
              for i in range(k)]
    with GpuSampler(args.device == "cuda") as gpu:
        finished = run_trials(trials, k, workdir=workdir, threads=threads, stubs=stubs)
    ok = [f for f in finished if f.returncode == 0]
    row = {"k": k, "batch_size": batch, "threads_per_trial": threads, "trials": len(finished),
           "failed": len(finished) - len(ok), "gpu": gpu.summary(),
           "errors": sorted({f.error for f in finished if f.error})}
    if len(ok) == k:
        steady, window = steady_images_per_s(ok)
        steady = None if math.isnan(steady) else steady  # None: no window where all k trained
        images = sum(f.result["images_processed"] for f in ok)
        wall = max(f.end_s for f in ok) - min(f.start_s for f in ok)
        row.update(steady_images_per_s=steady, steady_window_s=window,
                   per_trial_images_per_s=float(np.mean([f.result["images_processed"] /
                                                         f.result["train_time_s"] for f in ok])),
                   end_to_end_images_per_s=images / wall, wall_s=wall, images=images,
                   startup_s=float(np.mean([f.proc_wall_s - f.result["wall_time_s"] for f in ok])))
    row["runs"] = [f.row() for f in finished]
    return row


def recommend(rows: list[dict], within: float = 0.95) -> dict[int, int]:
    """Per batch size: the smallest k whose steady aggregate is within ``within`` of the best k
    measured (more processes cost memory and per-trial latency for no more throughput)."""
    best_k = {}
    for batch in sorted({r["batch_size"] for r in rows}):
        measured = [r for r in rows if r["batch_size"] == batch and (r.get("steady_images_per_s") or 0) > 0]
        if measured:
            top = max(r["steady_images_per_s"] for r in measured)
            best_k[batch] = min(r["k"] for r in measured if r["steady_images_per_s"] >= within * top)
    return best_k


def _measured(value) -> bool:
    return value is not None and not math.isnan(value)


def _fmt(value, spec: str) -> str:
    return format(value, spec) if _measured(value) else "—"


def table(rows: list[dict]) -> str:
    lines = [("| k | batch | steady img/s (all k) | x k=1 | per-trial img/s | end-to-end img/s | "
              "start-up s | GPU util % | GPU mem MiB | threads/trial |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["batch_size"]: r.get("steady_images_per_s") for r in rows if r["k"] == 1}
    for r in rows:
        steady, one = r.get("steady_images_per_s"), base.get(r["batch_size"])
        speedup = steady / one if _measured(steady) and _measured(one) and one > 0 else None
        status = "" if not r["failed"] else f" ({r['failed']} failed: {'; '.join(r['errors'])[:80]})"
        lines.append(f"| {r['k']} | {r['batch_size']} | {_fmt(steady, '.1f')}{status} | "
                     f"{_fmt(speedup, '.2f')} | {_fmt(r.get('per_trial_images_per_s'), '.1f')} | "
                     f"{_fmt(r.get('end_to_end_images_per_s'), '.1f')} | {_fmt(r.get('startup_s'), '.1f')} | "
                     f"{_fmt(r['gpu']['util_mean_pct'], '.0f')} | {_fmt(r['gpu']['mem_peak_mib'], '.0f')} | "
                     f"{r['threads_per_trial']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--ks", type=int_list, default=None,
                        help="concurrent trials to try, comma-separated (default: CUDA 1,2,4,8; CPU 1,2,4)")
    parser.add_argument("--batches", type=int_list, default=[4, 16],
                        help="batch sizes, comma-separated (default: 4,16)")
    parser.add_argument("--model", default=None,
                        help="architecture (default: CUDA resnet50, CPU resnet10)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="px, stored and fed (default: CUDA 256, CPU 64)")
    parser.add_argument("--n", type=int, default=None,
                        help="dataset images, 80%% of them trained on per epoch (default: CUDA 200, CPU 60)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per trial; >= 3 leaves a steady window (default: CUDA 12, CPU 4)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, small_cnn, 32 px, n 48, 3 epochs, k 1,2, batch 16: checks it runs")
    parser.add_argument("--json-out", default=None, help="write every measurement here as JSON")
    parser.add_argument("--workdir", default=None,
                        help="folder for the dataset and the trials' JSON (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device = "cpu" if args.device == "auto" else args.device
        args.ks, args.batches = args.ks or [1, 2], [16]
        args.model, args.image_size = args.model or "small_cnn", args.image_size or 32
        args.n, args.epochs = args.n or 48, args.epochs or 3
    args.device = resolve_device(args.device)
    cuda = args.device == "cuda"
    args.ks = args.ks or ([1, 2, 4, 8] if cuda else [1, 2, 4])
    args.model = args.model or ("resnet50" if cuda else "resnet10")
    args.image_size = args.image_size or (256 if cuda else 64)
    args.n = args.n or (200 if cuda else 60)
    args.epochs = args.epochs or (12 if cuda else 4)
    stubs = missing_modules()

    with tempfile.TemporaryDirectory(prefix="xfer-packing-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        data = write_dataset(workdir / f"data-{args.n}-{args.image_size}", args.n, args.image_size)
        print(f"packing: {args.model}, {args.image_size} px, n {args.n} ({args.epochs} epochs per "
              f"trial), device {args.device}, {cpu_cores()} CPU cores, k {args.ks}, batch {args.batches}"
              + (f"; stubbed modules in the trials: {', '.join(stubs)}" if stubs else ""), flush=True)
        rows: list[dict] = []
        for batch in args.batches:
            for k in args.ks:
                row = measure(k, batch, args, data, workdir, stubs)
                rows.append(row)
                print(f"  k {k} batch {batch}: steady {_fmt(row.get('steady_images_per_s'), '.1f')} img/s, "
                      f"per trial {_fmt(row.get('per_trial_images_per_s'), '.1f')}, "
                      f"wall {_fmt(row.get('wall_s'), '.1f')} s", flush=True)
                write_json(args, stubs, rows)  # after every row: a run cut short keeps what it measured
    print()
    print(table(rows))
    print()
    for batch, k in recommend(rows).items():
        print(f"recommended k (batch {batch}, {args.model} {args.image_size} px, {args.device}): {k}"
              " — the smallest k within 5% of the best steady aggregate measured")
    if args.json_out:
        print(f"wrote {args.json_out}")
    return 1 if any(r["failed"] for r in rows) else 0


def write_json(args: argparse.Namespace, stubs: list[str], rows: list[dict]) -> None:
    if not args.json_out:
        return
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({
        "benchmark": "packing", "device": args.device, "model": args.model,
        "image_size": args.image_size, "n": args.n, "epochs": args.epochs, "cpu_cores": cpu_cores(),
        "stubbed_modules": stubs, "rows": rows,
        "recommended_k": {str(b): k for b, k in recommend(rows).items()}}, indent=2))


def exit_with(main_function, interrupted: str) -> None:
    """Run a benchmark's ``main`` as a script: its return code, or 130 and ``interrupted`` on
    stderr when the GPU suite's timeout sends SIGINT (its trials are already killed by then)."""
    try:
        sys.exit(main_function())
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    exit_with(main, "packing: interrupted; rows measured so far are above (and in --json-out)")
