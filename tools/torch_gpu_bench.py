"""PyTorch GPU training-throughput baseline for `kdlab bench --device cuda`.

One training step = forward + cross-entropy + backward + SGD-Nesterov (momentum 0.9, weight decay
5e-4, zero_grad(set_to_none=True)) on a fixed random batch in fp32, train mode. LeNet-5: 1x28x28;
PreResNet: 3x32x32 (CIFAR-shaped). TF32 is OFF (kdlab's GPU comparison is strict fp32) unless
--tf32 (kdlab bench --tf32 passes it: tensor cores on both sides; --bf16, from kdlab bench
--precision bf16: autocast to bfloat16), and cudnn.benchmark is ON for
every variant. Variants (--variant, repeatable; default eager):
  eager          NCHW eager
  channels_last  eager with the model and input in channels_last
  compile        torch.compile(model), default mode, in a child process that leads its own process
                 group; the whole child (start-up, compile, warm-up, timed steps) gets
                 --compile-timeout seconds of wall time, then the group (the compiler's workers
                 too) is killed and the row says "unavailable: <reason>" (cold compiles take tens
                 of seconds per model: callers without the flag, like kdlab bench, can set
                 $TORCH_GPU_BENCH_COMPILE_TIMEOUT). The group is also killed when this script is
                 terminated, and the child dies with this script (PR_SET_PDEATHSIG).
  distill        student + the cached logits of --teachers eval-mode teachers of the same
                 architecture: their ensemble logits (log of the mean softmax) for 4 batches are
                 computed once under no_grad and the teachers freed, as a training run's logit
                 cache does; step i reads batch i % 4's rows; loss = tau^2 * soft cross-entropy
                 at --tau; also times a plain student step and reports distill_over_student
  all            the four above
(distill uses --model for the student and the teachers: `--model preresnet56 --variant distill`.)
stdout is JSON Lines: one FLAT object per variant (no nested objects, so a reader that parses from
the last '{' gets the last variant whole), e.g.
  python3 tools/torch_gpu_bench.py --model preresnet56 --variant eager
  {"model": "preresnet56", "variant": "eager", "status": "ok", "images_per_s": ..., ...}
Fields: model variant status ("ok" | "unavailable: ..." | "error: ...") images_per_s
ms_per_step_{median,mean,min,p90} peak_mem_mib (max_memory_allocated over the timed steps) batch
classes steps warmup device device_name torch_version tf32 tf32_setting seconds; compile adds compile_s;
distill adds student_* (the same for a plain student step), distill_over_student, teachers, tau.
Step times come from CUDA events between consecutive steps (no sync inside the timed loop), so the
median is the steady-state period; ms_per_step_mean is the wall time of all timed steps / steps.
Human-readable notes (torch version, device) go to stderr. Exit 1 if a requested variant other
than compile failed ("compile" may be "unavailable" and still exit 0). --device cpu is a debug
path (tiny --steps) for machines without a GPU.
"""
import argparse
import gc
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time


def die_with_parent():
    """Linux: SIGKILL this process when the process that started it dies (even by SIGKILL)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if str(os.getppid()) != os.environ.get("TORCH_GPU_BENCH_PARENT", str(os.getppid())):
            os._exit(1)  # the parent died before the line above
    except Exception:  # noqa: BLE001 - best effort; the parent's killpg still bounds us
        pass


if "--child-compile" in sys.argv[1:]:
    die_with_parent()  # before importing torch, which takes seconds

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_torch import PreResNet, lenet5  # noqa: E402

VARIANTS = ["eager", "channels_last", "compile", "distill"]
DEFAULT_CLASSES = {"lenet5": 10, "preresnet20": 10, "preresnet56": 100}


def build(name, classes):
    if name == "lenet5":
        return lenet5(classes), (1, 28, 28)
    return PreResNet({"preresnet20": 20, "preresnet56": 56}[name], classes), (3, 32, 32)


def set_fp32_math(tf32):
    """TF32 on or off with whichever API this torch has; mixing the two APIs can raise in 2.9+."""
    try:
        if hasattr(torch.backends, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
            torch.backends.cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
            return (f"fp32_precision matmul={torch.backends.cuda.matmul.fp32_precision} "
                    f"conv={torch.backends.cudnn.conv.fp32_precision}")
    except Exception as e:  # noqa: BLE001 - fall back to the legacy flags below
        print(f"note: fp32_precision API failed ({e}); using allow_tf32", file=sys.stderr)
    try:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        return (f"allow_tf32 matmul={torch.backends.cuda.matmul.allow_tf32} "
                f"cudnn={torch.backends.cudnn.allow_tf32}")
    except Exception as e:  # noqa: BLE001 - say so in every row rather than crash
        return f"unknown ({type(e).__name__}: {e})"[:200]


def describe(device):
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return {"device_name": torch.cuda.get_device_name(device),
                "capability": f"{p.major}.{p.minor}",
                "cuda_version": str(torch.version.cuda),
                "cudnn_version": str(torch.backends.cudnn.version())}
    return {"device_name": "cpu", "threads": torch.get_num_threads()}


class Setup:
    """Model, optimizer and a fixed batch; same seed -> same weights and data in every variant."""

    def __init__(self, args, device, seed_offset=0, channels_last=False):
        self.args = args
        torch.manual_seed(args.seed + seed_offset)
        self.model, shape = build(args.model, args.classes)
        # Data on the CPU generator first so the batch is the same on every device.
        g = torch.Generator().manual_seed(args.seed + 1000)
        self.x = torch.randn(args.batch, *shape, generator=g).to(device)
        self.y = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
        self.model.to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=0.9,
                                   nesterov=True, weight_decay=args.weight_decay)

    def ce_step_fn(self, forward):
        def step():
            self.opt.zero_grad(set_to_none=True)
            with precision(self.args, self.x.device):
                loss = F.cross_entropy(forward(self.x), self.y)
            loss.backward()
            self.opt.step()
        return step


def precision(args, device):
    """--bf16: autocast to bfloat16 around the forward (PyTorch's mixed precision: bf16
    activations, fp32 master weights and optimizer), kdlab's --precision bf16; else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps, warmup, device, timing):
    """Runs warmup then `steps` timed steps; returns (per-step ms list, wall ms per step, peak MiB)."""
    for _ in range(warmup):
        step()
    sync(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gc.disable()  # a collection inside the loop would show up as a one-step stall
    try:
        ms = []
        if device.type == "cuda" and timing == "events":
            events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
            wall0 = time.perf_counter()
            events[0].record()
            for i in range(steps):
                step()
                events[i + 1].record()
            sync(device)
            wall = time.perf_counter() - wall0
            ms = [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
        else:
            wall0 = time.perf_counter()
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                sync(device)
                ms.append(1000 * (time.perf_counter() - t0))
            wall = time.perf_counter() - wall0
    finally:
        gc.enable()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return ms, 1000 * wall / steps, peak


def summarize(batch, ms, wall_ms, peak, prefix=""):
    median = statistics.median(ms)
    out = {prefix + "images_per_s": round(batch / (median / 1000), 1),
           prefix + "ms_per_step_median": round(median, 4),
           prefix + "ms_per_step_mean": round(wall_ms, 4),
           prefix + "ms_per_step_min": round(min(ms), 4),
           prefix + "ms_per_step_p90": round(sorted(ms)[int(0.9 * (len(ms) - 1))], 4)}
    if peak is not None:
        out[prefix + "peak_mem_mib"] = round(peak, 1)
    return out


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_eager(args, device, channels_last):
    s = Setup(args, device, channels_last=channels_last)
    ms, wall, peak = time_steps(s.ce_step_fn(s.model), args.steps, args.warmup, device, args.timing)
    return summarize(args.batch, ms, wall, peak)


CACHED_BATCHES = 4


def run_distill(args, device):
    tau, m = args.tau, args.teachers
    s = Setup(args, device)
    teachers = []
    for k in range(m):
        t = Setup(args, device, seed_offset=100 + k).model
        t.eval().requires_grad_(False)
        teachers.append(t)
    g = torch.Generator().manual_seed(args.seed + 2000)
    with torch.no_grad():
        cached = []
        for i in range(CACHED_BATCHES):
            xb = s.x if i == 0 else torch.randn(s.x.shape, generator=g).to(device)
            # log of the mean of member probabilities, computed stably as logsumexp - log m.
            member_logp = torch.stack([F.log_softmax(t(xb), dim=1) for t in teachers])
            cached.append(torch.logsumexp(member_logp, dim=0) - math.log(m))
        cache = torch.cat(cached)
    del teachers, cached
    if device.type == "cuda":
        torch.cuda.empty_cache()
    step_index = [0]

    def distill_step():
        s.opt.zero_grad(set_to_none=True)
        row = (step_index[0] % CACHED_BATCHES) * args.batch
        step_index[0] += 1
        with torch.no_grad():
            p = F.softmax(cache[row:row + args.batch] / tau, dim=1)
        with precision(args, device):
            logits = s.model(s.x)
        log_q = F.log_softmax(logits.float() / tau, dim=1)
        loss = -(tau * tau) * (p * log_q).sum(dim=1).mean()
        loss.backward()
        s.opt.step()

    plain = summarize(args.batch, *time_steps(s.ce_step_fn(s.model), args.steps, args.warmup,
                                              device, args.timing), prefix="student_")
    out = summarize(args.batch, *time_steps(distill_step, args.steps, args.warmup, device,
                                            args.timing))
    out.update(plain)
    out["distill_over_student"] = round(out["ms_per_step_median"] / plain["student_ms_per_step_median"], 3)
    out.update({"teachers": m, "tau": tau})
    return out


class CompileTimeout(Exception):
    pass


# Seconds of the child's wall-time limit kept for the timed steps after compile + warm-up.
TIMED_RESERVE_S = 5.0


def run_compile_here(args, device):
    """The child's side: compile, warm up under an alarm, then time like eager."""
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"torch.compile needs PyTorch 2.x (this is {torch.__version__})")
    s = Setup(args, device)

    fired = []
    # The parent kills us at its deadline; stop compiling early enough to report why.
    deadline = float(os.environ.get("TORCH_GPU_BENCH_CHILD_DEADLINE", 0)) or (
        time.time() + args.compile_timeout)
    alarm_s = max(1, int(deadline - time.time() - TIMED_RESERVE_S))

    def on_alarm(signum, frame):
        fired.append(True)  # in case the compiler swallows the exception and falls back to eager
        raise CompileTimeout(f"compile + warm-up exceeded {alarm_s} s "
                             f"(of a {args.compile_timeout:g} s limit)")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(alarm_s)
    t0 = time.perf_counter()
    try:
        # Compiling is lazy (first forward, then first backward), so the first step is timed.
        step = s.ce_step_fn(torch.compile(s.model))
        step()
        sync(device)
        compile_s = time.perf_counter() - t0
        for _ in range(args.compile_warmup):
            step()
        sync(device)
    finally:
        signal.alarm(0)
    if fired:
        raise CompileTimeout(f"compile + warm-up exceeded {alarm_s} s "
                             f"(of a {args.compile_timeout:g} s limit)")
    out = summarize(args.batch, *time_steps(step, args.steps, 0, device, args.timing))
    out.update({"compile_s": round(compile_s, 2), "warmup": args.compile_warmup})
    return out


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_compile_child(args):
    """Runs the compile variant in its own process group and kills the group past the limit."""
    if not hasattr(torch, "compile"):
        return {"status": f"unavailable: torch.compile needs PyTorch 2.x (this is {torch.__version__})"}
    # The child gets the same flags; with --child-compile it ignores --variant and only compiles.
    cmd = [sys.executable, os.path.abspath(__file__), "--child-compile"] + args.argv
    limit = args.compile_timeout  # the child's whole wall time, start-up and timed steps included
    env = dict(os.environ, TORCH_GPU_BENCH_CHILD_DEADLINE=f"{time.time() + limit:.3f}",
               TORCH_GPU_BENCH_PARENT=str(os.getpid()))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    # The child is not in our process group, so a `timeout` or Ctrl-C that ends us would not end
    # it: kill its group on the way out too.
    previous = {}

    def on_term(signum, frame):
        kill_group(proc.pid)
        signal.signal(signum, previous.get(signum, signal.SIG_DFL))
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_term)
    killed = False
    try:
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            killed = True
            kill_group(proc.pid)
            try:  # what it printed before the kill is kept; a stray holder of the pipes is not waited for
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = "", ""
    finally:
        kill_group(proc.pid)  # the compiler's workers, also after a normal exit
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    if killed:
        return {"status": f"unavailable: torch.compile run killed after {limit:.0f} s"}
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-15:]
    sys.stderr.write("compile child stderr (tail):\n" + "\n".join(tail) + "\n")
    reason = tail[-1].strip()[:200] if tail else "no output"
    return {"status": f"unavailable: compile child exited {proc.returncode}: {reason}"}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch GPU training-throughput baseline")
    ap.add_argument("--model", choices=sorted(DEFAULT_CLASSES), required=True)
    ap.add_argument("--classes", type=int, default=None,
                    help="output classes (default: lenet5 10, preresnet20 10, preresnet56 100)")
    ap.add_argument("--variant", action="append", choices=VARIANTS + ["all"],
                    help="repeatable; default eager")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (eager, distill)")
    ap.add_argument("--compile-warmup", type=int, default=50,
                    help="untimed steps after the first (compiling) step")
    ap.add_argument("--compile-timeout", type=float,
                    default=float(os.environ.get("TORCH_GPU_BENCH_COMPILE_TIMEOUT", 120)),
                    help="wall seconds for the whole compile child (start-up, compile, warm-up, "
                         "timed steps) before its process group is killed and compile is "
                         "'unavailable' (default $TORCH_GPU_BENCH_COMPILE_TIMEOUT or 120)")
    ap.add_argument("--teachers", type=int, default=5, help="distill: ensemble size")
    ap.add_argument("--tau", type=float, default=4.0, help="distill: temperature")
    ap.add_argument("--tf32", action="store_true",
                    help="TF32 tensor cores for float matmuls and convolutions (default: off)")
    ap.add_argument("--bf16", action="store_true",
                    help="autocast the forward to bfloat16 (kdlab bench --precision bf16)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--timing", choices=["events", "sync"], default="events",
                    help="events: CUDA events between steps; sync: synchronize around each step")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu is a debug path for machines without a GPU")
    ap.add_argument("--threads", type=int, default=0, help="cpu only: torch threads (0 = default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child-compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.classes is None:
        args.classes = DEFAULT_CLASSES[args.model]
    if min(args.batch, args.steps, args.classes, args.teachers) < 1 or args.tau <= 0:
        ap.error("--batch, --steps, --classes, --teachers must be >= 1 and --tau > 0")
    if min(args.warmup, args.compile_warmup) < 0 or args.compile_timeout <= 0:
        ap.error("--warmup and --compile-warmup must be >= 0, --compile-timeout > 0")
    chosen = args.variant or ["eager"]
    args.variant = VARIANTS if "all" in chosen else list(dict.fromkeys(chosen))
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    base = {"model": args.model, "variant": None, "status": None, "device": args.device,
            "batch": args.batch, "classes": args.classes, "steps": args.steps,
            "warmup": args.warmup, "torch_version": torch.__version__}
    if device.type == "cuda" and not torch.cuda.is_available():
        for v in args.variant:
            print(json.dumps(dict(base, variant=v, status="unavailable: CUDA is not available to torch")))
        print("torch_gpu_bench: CUDA is not available to this torch", file=sys.stderr)
        return 1
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    base["bf16"] = args.bf16
    base["tf32"] = args.tf32
    base["tf32_setting"] = set_fp32_math(args.tf32)
    base["cudnn_benchmark"] = True
    base.update(describe(device))

    if args.child_compile:
        try:
            result = dict(base, variant="compile", status="ok", **run_compile_here(args, device))
            rc = 0
        except Exception as e:  # noqa: BLE001 - reported as a value, never a crash
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
            result = dict(base, variant="compile", status="unavailable: " + msg)
            rc = 0
        print(json.dumps(result), flush=True)
        sys.stderr.flush()
        # This process leads its own group (start_new_session): end it with the compiler's worker
        # processes, whose shutdown can hang and which may hold our stdout open.
        os.killpg(os.getpgid(0), signal.SIGKILL)
        os._exit(rc)

    print(f"torch {torch.__version__} on {base['device_name']} ({args.device}); TF32 "
          f"{'on' if args.tf32 else 'off'} ({base['tf32_setting']}); cudnn.benchmark on; {args.model}, batch {args.batch}, "
          f"{args.classes} classes", file=sys.stderr)
    failed = False
    for v in args.variant:
        t0 = time.perf_counter()
        try:
            if v == "eager":
                fields = run_eager(args, device, channels_last=False)
            elif v == "channels_last":
                fields = run_eager(args, device, channels_last=True)
            elif v == "distill":
                fields = run_distill(args, device)
            else:
                fields = run_compile_child(args)
            fields.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001 - one failing variant must not hide the others
            fields = {"status": "error: " + f"{type(e).__name__}: {e}".replace("\n", " ")[:300]}
        if not fields["status"].startswith(("ok", "unavailable")):
            failed = True
        row = dict(base)
        row.update(fields)
        row["variant"] = v
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        if "images_per_s" in row:
            print(f"  {v}: {row['images_per_s']} img/s, {row['ms_per_step_median']} ms/step median"
                  + (f", peak {row['peak_mem_mib']} MiB" if "peak_mem_mib" in row else "")
                  + (f", x{row['distill_over_student']} of a student step" if v == "distill" else ""),
                  file=sys.stderr)
        else:
            print(f"  {v}: {row['status']}", file=sys.stderr)
        release(device)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
