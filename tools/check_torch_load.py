"""Loads a kdlab checkpoint into the paper's PyTorch model with load_state_dict(strict=True) and
evaluates it on the Fashion-MNIST test set with the normalization recorded in the file, so the
interoperability promise (same names, dtypes, layouts, metadata) is checked end to end without
kdlab. Run with Debian's python3-torch:

    /usr/bin/python3 tools/check_torch_load.py runs/<run>/teacher-a.safetensors

Prints one JSON line: the model, strict-load result and PyTorch's test accuracy (compare with
`kdlab eval --model <file>`).
"""
import gzip
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from models_torch import PreResNet, lenet5  # noqa: E402


def build(meta):
    arch, classes = meta["model"], int(meta["num_classes"])
    if arch == "lenet5":
        return lenet5(classes)
    if arch.startswith("preresnet") and not arch.endswith("-ln"):
        return PreResNet(int(arch[len("preresnet"):]), classes)
    raise SystemExit(f"check_torch_load: no PyTorch reference for model {arch!r}")


def fmnist_test(data_dir):
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: check_torch_load.py CHECKPOINT.safetensors")
    tensors, meta = st.load(sys.argv[1])
    model = build(meta)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    result = {"file": sys.argv[1], "model": meta["model"], "strict_load": "ok"}
    if meta["model"] == "lenet5":
        data_dir = os.environ.get("KDLAB_FMNIST_DIR") or "/usr/share/datasets/fashion-mnist"
        images, labels = fmnist_test(data_dir)
        mean = torch.tensor(json.loads(meta["normalization_mean"])).view(1, -1, 1, 1)
        std = torch.tensor(json.loads(meta["normalization_std"])).view(1, -1, 1, 1)
        x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - mean) / std
        with torch.no_grad():
            pred = model(x).argmax(1).numpy()
        result["torch_test_accuracy"] = float((pred == labels).mean())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
