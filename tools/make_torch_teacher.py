"""Teachers "trained elsewhere": PyTorch models saved the standard way, for `kdlab import` tests.

Run with the official safetensors library: `/opt/kdlab-venv/bin/python tools/make_torch_teacher.py`
(a venv over Debian's python3-torch: /usr/bin/python3 -m venv --system-site-packages
/opt/kdlab-venv && /opt/kdlab-venv/bin/pip install safetensors). Deterministic (torch.manual_seed,
one thread): a rerun gives the same tensors byte for byte; only the order of the metadata keys in
expected.safetensors' header may change (the library's own choice), which no reader depends on.

Writes into tests/golden/torch_teachers/ (a subfolder: these files are in the official library's
layout, not tools/st.py's canonical one that tests/test_safetensors.cpp re-encodes byte for byte):
  lenet5.safetensors      LeNet-5, 10 classes, 1x28x28 input (PyTorch default init)
  preresnet8.safetensors  PreResNet-8 (one basic block per stage), 10 classes, 1x32x32 input
      both exactly `safetensors.torch.save_file(model.state_dict(), path)`: no metadata, F32
      weights, I64 num_batches_tracked.
  expected.safetensors    for <m> in {lenet5, preresnet8}: <m>.input [8,1,S,S] F32 (already
      normalized, in [-1, 1]) and <m>.logits [8,10] F32, PyTorch's eval-mode float32 forward.

The PreResNet's BatchNorm layers are made non-trivial first, as training would leave them: random
affine parameters, then three train-mode forwards on random batches under no_grad to move the
running statistics (momentum 0.1) and num_batches_tracked (3); otherwise eval mode would see
mean 0 / var 1 and test little.
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_torch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "torch_teachers")


def settle_batchnorm(model, size):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, size, size) * 2 - 1)
    model.eval()


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    models = {"lenet5": (models_torch.lenet5(10), 28),
              "preresnet8": (models_torch.PreResNet(8, 10, in_channels=1), 32)}
    expected = {}
    for name, (model, size) in models.items():
        if name.startswith("preresnet"):
            settle_batchnorm(model, size)
        model.eval()
        save_file(model.state_dict(), os.path.join(OUT, name + ".safetensors"))
        x = (torch.rand(8, 1, size, size) * 2 - 1).contiguous()
        with torch.no_grad():
            logits = model(x)
        expected[name + ".input"] = x
        expected[name + ".logits"] = logits.contiguous()
        print(name, sum(p.numel() for p in model.parameters()), "parameters")
    save_file(expected, os.path.join(OUT, "expected.safetensors"),
              metadata={"generator": "tools/make_torch_teacher.py", "torch": torch.__version__,
                        "description": "eval-mode float32 logits of the teachers for fixed inputs"})


if __name__ == "__main__":
    main()
