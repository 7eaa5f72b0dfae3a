"""Writes the PyTorch golden files in tests/golden/ that the C++ tests compare against.

Run with Debian's torch: `/usr/bin/python3 tools/make_golden.py` (deterministic: fixed seeds, CPU,
float64). `--only vgg16_golden` (or any file stem below, repeatable) rewrites just those files:
another torch build can change the last bits of the others' float64 gradients, which their
tolerances absorb, so there is no need to churn them when one file is added. Files (every tensor name below is exact; safetensors via tools/st.py):

lenet5_golden.safetensors -- LeNet-5, 10 classes, float64 forward+backward, one batch.
  param.<name>   every parameter, state-dict names (0.weight ... 11.bias), F32 (exact, see below)
  input          [4,1,28,28] F32 (exact);  labels [4] I64
  logits         [4,10] F64;  loss  [] F64 = cross_entropy(logits, labels), mean over the batch
  grad.<name>    d loss / d param, F32 (computed in f64, rounded on storage)
preresnet20_golden.safetensors -- PreResNet-20, 10 classes, TRAIN mode (BN batch statistics).
  param.*, input [2,3,32,32], labels [2], logits, loss, grad.* as above, plus
  buffer.<name>  running_mean / running_var (F64) and num_batches_tracked (I64) AFTER the forward
                 (momentum 0.1, unbiased running variance; before it they were 0 / 1 / 0)
  logits_eval    [2,10] F64: eval mode (running stats = buffer.*), torch.no_grad(), same input,
                 same parameters (no optimizer step is taken)
optim_golden.safetensors -- optimizers + cosine schedule on a 7-element float64 parameter.
  param0 [7] F64, grads [5,7] F64 (the gradient fed at step k is grads[k])
  <opt>.lr [5] F64       lr used by step k (read before opt.step())
  <opt>.params [5,7] F64 parameter after step k
  <opt> in: sgd_nesterov (SGD lr .1, momentum .9, nesterov, weight_decay 1e-4),
            sgd (same, nesterov off), adam (Adam lr 1e-2, betas (.9,.999), eps 1e-8, weight_decay 1e-4);
  every one with CosineAnnealingLR(T_max=5, eta_min=1e-3) stepped after each optimizer step.
distill_golden.safetensors -- distillation losses of the paper's code, float64.
  teacher_members [3,5,7] (layout [m, B, C]; the paper code stacks [B, m, C]: same numbers)
  student_logits [5,7];  teacher_logits [5,7] = logsumexp_m(log_softmax(member)) - log m
  taus [2] = (1, 4);  for tau in {1, 4}, p = softmax(teacher/tau), q = softmax(student/tau):
  tau<t>.fwd_ce [] = mean_b(-tau^2 sum_j p log q)  (TeacherStudentFwdCrossEntLoss)
  tau<t>.kl [] = mean_b sum_j p (log p - log q)      (TeacherStudentKLLoss, no tau^2)
  tau<t>.grad_fwd_ce, tau<t>.grad_kl [5,7] = gradients w.r.t. student_logits

vgg16_golden.safetensors -- VGG-16 (no BN), 100 classes, 3 channels, EVAL mode, float64. Its 15.3M
  parameters (61 MB) are not stored: both sides fill them from vgg16_formula_params (below), a
  splitmix64 hash of (parameter position k in state-dict order, flat index i) whose every step is
  exact in IEEE double, so C++ computes the very same values.
  shape.<name>   I64 [ndim] per state-dict entry, IN PyTorch's state-dict order (names, shapes, order)
  param_sum      [32] F64: the sum of each formula-filled parameter (checks the formula is shared)
  input          [2,3,32,32] F32 (exact);  labels [2] I64
  logits_eval    [2,100] F64: eval mode (dropout off), the formula parameters
  loss           [] F64 = cross_entropy(logits_eval, labels), still in eval mode
  grad_input     [2,3,32,32] F32: d loss / d input (computed in f64)
  grad_dot_param [32] F64: sum_i (d loss / d p_i) * p_i per parameter, state-dict order
  Train-mode dropout is not in it (PyTorch's mask comes from its own generator).

Sizes: the total must stay < 3 MB (git). Float64 parameters and gradients of PreResNet-20 alone
would take 4.4 MB, so: models are initialised in float32 and then converted with .double(), which
makes parameters and inputs exactly representable in F32 (asserted here; load them and widen to
double); gradients are stored F32 (relative rounding <= 2^-24); everything else is F64.
Optional `--with-bottleneck` also writes preresnet11b_golden.safetensors (bottleneck blocks forced,
one per stage, ~1 MB) OUTSIDE the size budget; it is not committed by default.
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
import numpy as np  # noqa: E402
from models_torch import VGG16, PreResNet, lenet5  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "golden")
SIZE_BUDGET = 3 * 1000 * 1000


def exact_f32(t, what):
    f = t.detach().float()
    assert torch.equal(f.double(), t.detach().double()), f"{what} is not exactly representable in F32"
    return f


def provenance(description, seed):
    return {"generator": "tools/make_golden.py", "torch": torch.__version__, "seed": str(seed),
            "description": description}


def model_golden(model, x, labels, train, with_buffers):
    """Forward + cross-entropy + backward in float64; returns the ordered tensor dict."""
    model.double()
    model.train(train)
    out = OrderedDict()
    for name, p in model.named_parameters():
        out["param." + name] = exact_f32(p, name)
    out["input"] = exact_f32(x, "input")
    out["labels"] = labels
    logits = model(x.double())
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach()
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().float()
    if with_buffers:
        for name, b in model.named_buffers():
            out["buffer." + name] = b.detach().clone()
        model.eval()
        with torch.no_grad():
            out["logits_eval"] = model(x.double())
    return out


def make_lenet5():
    seed = 0
    torch.manual_seed(seed)
    model = lenet5(10)
    x = torch.randn(4, 1, 28, 28)
    labels = torch.randint(0, 10, (4,))
    return model_golden(model, x, labels, train=True, with_buffers=False), provenance(
        "LeNet-5 10 classes, f64 forward/backward, cross-entropy mean", seed)


def make_preresnet(depth, block, seed):
    torch.manual_seed(seed)
    model = PreResNet(depth, 10, block=block)
    x = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 10, (2,))
    return model_golden(model, x, labels, train=True, with_buffers=True), provenance(
        f"PreResNet-{depth} ({block or 'default'} blocks) 10 classes, train-mode f64 forward/backward; "
        "buffers after the forward; logits_eval in eval mode without an optimizer step", seed)


def make_optim():
    seed = 0
    torch.manual_seed(seed)
    param0 = torch.randn(7, dtype=torch.float64)
    grads = torch.randn(5, 7, dtype=torch.float64)
    out = OrderedDict(param0=param0, grads=grads)
    configs = [
        ("sgd_nesterov", lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)),
        ("sgd", lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4)),
        ("adam", lambda p: torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)),
    ]
    for name, make in configs:
        p = param0.clone().requires_grad_(True)
        opt = make(p)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5, eta_min=1e-3)
        lrs, params = [], []
        for k in range(5):
            p.grad = grads[k].clone()
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            params.append(p.detach().clone())
        out[name + ".lr"] = torch.tensor(lrs, dtype=torch.float64)
        out[name + ".params"] = torch.stack(params)
    return out, provenance("SGD(-Nesterov)/Adam with CosineAnnealingLR(T_max=5, eta_min=1e-3); "
                           "see tools/make_golden.py for hyperparameters", seed)


def make_distill():
    seed = 0
    torch.manual_seed(seed)
    m, b, c = 3, 5, 7
    members = 3.0 * torch.randn(m, b, c, dtype=torch.float64)
    student = 2.0 * torch.randn(b, c, dtype=torch.float64)
    teacher = torch.logsumexp(F.log_softmax(members, dim=-1), dim=0) - math.log(m)
    out = OrderedDict(teacher_members=members, student_logits=student, teacher_logits=teacher,
                      taus=torch.tensor([1.0, 4.0], dtype=torch.float64))
    for tau in (1, 4):
        s = student.clone().requires_grad_(True)
        p = F.softmax(teacher / tau, dim=-1)
        logp = F.log_softmax(teacher / tau, dim=-1)
        logq = F.log_softmax(s / tau, dim=-1)
        fwd = (-(tau ** 2) * p * logq).sum(-1).mean()
        kl = (p * (logp - logq)).sum(-1).mean()
        ref_kl = F.kl_div(logq, logp, reduction="batchmean", log_target=True)
        assert torch.allclose(kl, ref_kl, rtol=1e-12, atol=0)
        (g_fwd,) = torch.autograd.grad(fwd, s, retain_graph=True)
        (g_kl,) = torch.autograd.grad(kl, s)
        out[f"tau{tau}.fwd_ce"] = fwd.detach()
        out[f"tau{tau}.kl"] = kl.detach()
        out[f"tau{tau}.grad_fwd_ce"] = g_fwd
        out[f"tau{tau}.grad_kl"] = g_kl
    # At tau=1 forward CE and KL differ by the teacher entropy only, so their gradients agree.
    assert torch.allclose(out["tau1.grad_fwd_ce"], out["tau1.grad_kl"], rtol=1e-12, atol=1e-15)
    return out, provenance("ensemble teacher (log-mean-prob) and KD losses at tau 1 and 4", seed)


def vgg16_formula_params(model):
    """Fills every parameter in state-dict order: value(k, i) = amp_k * (2u - 1), u in [0, 1) from
    splitmix64's finalizer of (k << 40) + i (uint64, wrapping), u = (z >> 11) / 2^53, so 2u - 1 =
    (z >> 11) * 2^-52 - 1 exactly. amp_k = sqrt(6 / fan_in) for weights (fan_in = numel / rows:
    He-uniform, activations keep their scale through 16 layers), 0.1 for biases. One sqrt, one
    division and one product, each correctly rounded in IEEE double: the C++ test
    (tests/test_golden.cpp, vgg16_formula_value) gets the same bits."""
    sums = []
    with torch.no_grad():
        for k, (name, p) in enumerate(model.state_dict(keep_vars=True).items()):
            i = np.arange(p.numel(), dtype=np.uint64)
            z = (np.uint64(k) << np.uint64(40)) + i
            z = z * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            unit = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -52 - 1.0
            amp = math.sqrt(6.0 / (p.numel() // p.shape[0])) if p.dim() >= 2 else 0.1
            p.copy_(torch.from_numpy(amp * unit).reshape(p.shape))
            sums.append(p.sum().item())
    return torch.tensor(sums, dtype=torch.float64)


def make_vgg16():
    seed = 0
    torch.manual_seed(seed)
    model = VGG16(100, in_channels=3).double()
    out = OrderedDict()
    for name, p in model.state_dict().items():
        out["shape." + name] = torch.tensor(list(p.shape), dtype=torch.int64)
    out["param_sum"] = vgg16_formula_params(model)
    x = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 100, (2,))
    out["input"] = exact_f32(x, "input")
    out["labels"] = labels
    model.eval()
    xd = x.double().requires_grad_(True)
    logits = model(xd)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out["logits_eval"] = logits.detach()
    out["loss"] = loss.detach()
    out["grad_input"] = xd.grad.detach().float()
    out["grad_dot_param"] = torch.tensor([(p.grad * p).sum().item() for p in model.parameters()],
                                         dtype=torch.float64)
    return out, provenance("VGG-16 (no BN) 100 classes, eval mode, f64; parameters from the "
                           "formula in tools/make_golden.py vgg16_formula_params, not stored", seed)


def describe(path, tensors):
    size = os.path.getsize(path)
    print(f"{os.path.relpath(path)}: {size:,} bytes, {len(tensors)} tensors")
    for prefix in ("param.", "grad.", "buffer.", "shape."):
        group = [t for name, t in tensors.items() if name.startswith(prefix)]
        if group:
            print(f"  {prefix + '*':40s} {len(group)} tensors, {sum(t.numel() for t in group):,} values")
    for name, t in tensors.items():
        if name.startswith(("param.", "grad.", "buffer.", "shape.")):
            continue
        value = f" = {t.item():.17g}" if t.dim() == 0 else ""
        print(f"  {name:40s} {str(t.dtype)[6:]:8s} {list(t.shape)}{value}")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=GOLDEN_DIR)
    ap.add_argument("--with-bottleneck", action="store_true",
                    help="also write preresnet11b_golden.safetensors (not counted in the budget)")
    ap.add_argument("--only", action="append", default=[], metavar="STEM",
                    help="write only this file (e.g. vgg16_golden); repeatable; the size budget "
                         "is still checked over every file in --out")
    args = ap.parse_args()
    torch.set_num_threads(1)  # summation order independent of the machine
    os.makedirs(args.out, exist_ok=True)
    jobs = [("lenet5_golden", make_lenet5),
            ("preresnet20_golden", lambda: make_preresnet(20, None, 0)),
            ("optim_golden", make_optim),
            ("distill_golden", make_distill),
            ("vgg16_golden", make_vgg16)]
    unknown = set(args.only) - {name for name, _ in jobs}
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; known: {[name for name, _ in jobs]}")
    total = 0
    for name, make in jobs:
        if args.only and name not in args.only:
            path = os.path.join(args.out, name + ".safetensors")
            total += os.path.getsize(path) if os.path.exists(path) else 0
            continue
        tensors, meta = make()
        path = os.path.join(args.out, name + ".safetensors")
        st.save(path, tensors, meta)
        back, _ = st.load(path)
        assert list(back) == list(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
        total += describe(path, tensors)
    print(f"total {total:,} bytes (budget {SIZE_BUDGET:,})")
    assert total < SIZE_BUDGET, "golden files exceed the size budget"
    if args.with_bottleneck:
        tensors, meta = make_preresnet(11, "bottleneck", 0)
        path = os.path.join(args.out, "preresnet11b_golden.safetensors")
        st.save(path, tensors, meta)
        describe(path, tensors)


if __name__ == "__main__":
    main()
