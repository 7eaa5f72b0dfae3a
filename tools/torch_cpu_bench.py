"""PyTorch CPU training-throughput baseline for comparing kdlab's CPU engine.

One training step = forward + cross-entropy + backward + SGD-Nesterov (momentum 0.9, weight decay
1e-4) on a fixed random batch (LeNet-5: 1x28x28, 10 classes; PreResNet: 3x32x32, 100 classes),
float32 (--bf16: the forward autocast to bfloat16), train mode. Prints ONE json line, e.g.
  /usr/bin/python3 tools/torch_cpu_bench.py --model preresnet20 --batch 128 --threads 2 --steps 20
  {"model": "preresnet20", "images_per_s": ..., "ms_per_step_median": ..., ...}
images_per_s = batch / median step time (the median ignores one-off stalls on a shared machine);
cores_used (process CPU time / wall time) and load_avg_1min show whether the cores were shared.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_torch import PreResNet, lenet5  # noqa: E402


def build(name):
    if name == "lenet5":
        return lenet5(10), (1, 28, 28), 10
    depth = {"preresnet20": 20, "preresnet56": 56}[name]
    return PreResNet(depth, 100), (3, 32, 32), 100


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU training throughput baseline")
    ap.add_argument("--model", choices=["lenet5", "preresnet20", "preresnet56"], required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true",
                    help="autocast the forward to bfloat16 (kdlab bench --precision bf16)")
    ap.add_argument("--peak-rss", action="store_true", help="add the process's max RSS (MiB)")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.threads < 1 or args.warmup < 0:
        ap.error("--steps, --batch and --threads must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, image_shape, classes = build(args.model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(args.batch, *image_shape)
    y = torch.randint(0, classes, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # forces completion of the step

    for _ in range(args.warmup):
        step()
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # CPU seconds per wall second: well below --threads means the cores were shared with others.
    cores_used = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    median = statistics.median(times)
    result = {
        "model": args.model,
        "images_per_s": round(args.batch / median, 1),
        "ms_per_step_median": round(1000 * median, 3),
        "ms_per_step_mean": round(1000 * statistics.fmean(times), 3),
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "bf16": args.bf16,
        "cores_used": round(cores_used, 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch_version": torch.__version__,
    }
    if args.peak_rss:
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
