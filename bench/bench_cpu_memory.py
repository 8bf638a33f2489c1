"""Host memory of one training forward + backward on CPU: the engine's estimate, live bytes, resident set.

Usage::

    python bench/bench_cpu_memory.py ARCH LENGTH [--preset NAME] [--checkpointing] [--live]
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python bench/bench_cpu_memory.py hawk 4096 --preset hawk-7m

Prints one JSON line:

* ``estimate_gib``: :func:`longdna.train.memory.estimate_training_memory` for one sequence of LENGTH tokens;
* ``live_gib`` (with ``--live``, glibc's own malloc only): the peak of bytes malloc'd and not yet freed
  (polled every 0.5 ms from a thread) plus 16 bytes per parameter, the quantity the estimate models. The
  poll slows a process with a fragmented heap down a lot;
* ``rss_gib``: the process's peak resident set (``ru_maxrss``), which includes the ~0.4 GiB Python/torch
  baseline and whatever the allocator keeps after tensors are freed: run under different allocators
  (``LD_PRELOAD``, ``MALLOC_MMAP_THRESHOLD_``) to see how much of it is the allocator's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import threading
import time

import torch

from longdna.models import build_model
from longdna.train.memory import GIB, estimate_training_memory, malloc_bytes_in_use
from longdna.train.objectives import token_loss_sum


class LiveBytesPoller:
    """Peak of glibc's bytes in use (:func:`~longdna.train.memory.malloc_bytes_in_use`), sampled from a thread."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval, self.base = interval, malloc_bytes_in_use()
        if self.base is None:
            raise SystemExit("--live needs glibc >= 2.33 (mallinfo2)")
        self.peak, self._stop = self.base, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, malloc_bytes_in_use())
            time.sleep(self.interval)

    def __enter__(self) -> LiveBytesPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch")
    parser.add_argument("length", type=int)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--live", action="store_true", help="poll glibc's live bytes (slow; glibc only)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def build():
        return build_model(args.arch, preset=args.preset)

    model = build()
    model.train()
    model.gradient_checkpointing = args.checkpointing
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # steady state: gradients exist from the previous step
    tokens = torch.randint(7, 11, (1, args.length))
    poller = LiveBytesPoller() if args.live else None
    started = time.perf_counter()
    with poller or contextlib.nullcontext():
        token_loss_sum(model(tokens), tokens)[0].backward()
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = 16 * model.num_parameters()
    # after the measurement: the fake-tensor forward leaves its own garbage in the allocator
    estimate = estimate_training_memory(
        build, 1, args.length, device=torch.device("cpu"), activation_checkpointing=args.checkpointing
    )
    print(
        json.dumps(
            {
                "arch": args.arch,
                "preset": args.preset,
                "length": args.length,
                "checkpointing": args.checkpointing,
                "allocator": os.environ.get("LD_PRELOAD") or "glibc",
                "estimate_gib": round(estimate.total / GIB, 3),
                "live_gib": None if poller is None else round((poller.peak - poller.base + weights) / GIB, 3),
                "rss_gib": round(rss / GIB, 3),
                "seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
