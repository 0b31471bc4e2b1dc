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

    python benchmarks/step_speed.py            # CPU: resnet18 at 64 px and small_cnn at 32 px, batch 16
    python benchmarks/step_speed.py --smoke    # 3 steps per config, what CI runs
    python benchmarks/step_speed.py --device cuda   # adds resnet50 at 224/256 px, batch 4/16/64,
                                                    # fp32 vs bf16, channels_last on/off
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from xfer import models  # noqa: E402
from xfer.batches import BatchPrep  # noqa: E402
from xfer.train import TrialConfig, resolve_device, train_one_epoch  # noqa: E402

NUM_CLASSES = 8


@dataclass(frozen=True)
class Case:
    model: str
    image_size: int  # px, stored and fed (no resize: both paths feed the same tensor size)
    batch_size: int
    bf16: bool
    channels_last: bool

    def __str__(self) -> str:
        return (f"{self.model:9s} {self.image_size:3d}px bs{self.batch_size:<3d} "
                f"{'bf16' if self.bf16 else 'fp32'} {'cl ' if self.channels_last else 'nchw'}")


def cases(device: torch.device) -> list[Case]:
    if device.type == "cpu":
        return [Case("resnet18", 64, 16, False, False), Case("small_cnn", 32, 16, False, False)]
    gpu = [Case("resnet50", size, batch, bf16, cl) for size, batch, bf16, cl in
           itertools.product((224, 256), (4, 16, 64), (False, True), (False, True))]
    return [Case("resnet18", 64, 16, True, True), Case("small_cnn", 32, 16, True, True)] + gpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(case: Case, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.create_model(case.model, NUM_CLASSES).to(device)
    return model.to(memory_format=torch.channels_last) if case.channels_last else model


class XferPath:
    """train_one_epoch over the first ``steps`` batches of a uint8 split."""

    def __init__(self, case: Case, device: torch.device, steps: int):
        n = steps * case.batch_size  # the most steps one run() takes
        self.images = torch.randint(0, 256, (n, 3, case.image_size, case.image_size),
                                    dtype=torch.uint8, device=device)
        self.labels = torch.randint(0, NUM_CLASSES, (n,), device=device)
        self.model = _model(case, device)
        self.optimizer = torch.optim.SGD(models.trainable_parameters(self.model), lr=0.01, momentum=0.9)
        self.prep = BatchPrep([0.5] * 3, [0.25] * 3, case.image_size, device=device,
                              channels_last=case.channels_last)
        self.config = TrialConfig(data="(benchmark)", model=case.model, batch_size=case.batch_size,
                                  epochs=1000, lr=0.01, schedule="cosine")
        self.amp_dtype = torch.bfloat16 if case.bf16 else None
        self.epoch = 0

    def run(self, steps: int) -> None:
        self.epoch += 1
        n = steps * self.config.batch_size
        train_one_epoch(self.model, self.optimizer, self.images[:n], self.labels[:n], self.prep,
                        self.config, self.epoch, 0, 1000 * steps, self.amp_dtype)


class PlainPath:
    """The reference loop on one preloaded float batch."""

    def __init__(self, case: Case, device: torch.device):
        self.x = torch.randn(case.batch_size, 3, case.image_size, case.image_size, device=device)
        if case.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, NUM_CLASSES, (case.batch_size,), device=device)
        self.model = _model(case, device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.bf16 = case.bf16
        self.device = device

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, _ = models.split_outputs(self.model(self.x))
                loss = F.cross_entropy(logits, self.y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        _sync(self.device)


def measure(case: Case, device: torch.device, steps: int, warmup: int, rounds: int) -> dict:
    xfer, plain = XferPath(case, device, max(steps, warmup)), PlainPath(case, device)
    for path in (xfer, plain):  # warm-up: cuDNN autotuning, oneDNN primitive caches, allocator
        path.run(warmup)
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
    return {"case": str(case), "xfer_steps_s": best["xfer"], "plain_steps_s": best["plain"],
            "ratio": best["xfer"] / best["plain"], "median_ratio": median["xfer"] / median["plain"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path per round (default: 5)")
    parser.add_argument("--rounds", type=int, default=12, help="alternating timed rounds (default: 12)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per path first (default: 5)")
    parser.add_argument("--smoke", action="store_true", help="3 steps, 1 round, 1 warm-up step: checks it runs")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this text")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.warmup = 3, 1, 1
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit does
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"step_speed: torch {torch.__version__}, {device} ({name}), "
          f"{args.steps} steps x {args.rounds} rounds after {args.warmup} warm-up")
    print(f"{'case':32s} {'xfer steps/s':>12s} {'plain steps/s':>13s} {'median ratio':>12s} "
          f"{'xfer/plain':>10s}")
    for case in cases(device):
        if args.only and args.only not in str(case):
            continue
        row = measure(case, device, args.steps, args.warmup, args.rounds)
        print(f"{row['case']:32s} {row['xfer_steps_s']:12.2f} {row['plain_steps_s']:13.2f} "
              f"{row['median_ratio']:12.3f} {row['ratio']:10.3f}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
