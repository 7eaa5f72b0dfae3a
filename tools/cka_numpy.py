"""Linear CKA in numpy: the reference our C++ CKA (engine/cka.cpp) is tested against.

The formula is the paper's Table 1 code's (yuanli2333's CKA.py, linear_CKA), written out here:
  K = X X^T, L = Y Y^T (n x n Gram matrices over the examples), H = I - 11^T / n,
  HSIC(K, L) = sum_ij (H K H)_ij (H L H)_ij,
  CKA(X, Y)  = HSIC(K, L) / (sqrt(HSIC(K, K)) sqrt(HSIC(L, L))).

  /usr/bin/python3 tools/cka_numpy.py --golden tests/golden/cka_golden.safetensors
      writes seeded activations (pairs [n, p] / [n, q], float64) and their CKA values:
      case<k>.x, case<k>.y, case<k>.cka (F64 []), for the cases listed in CASES.
  /usr/bin/python3 tools/cka_numpy.py FILE.safetensors A B
      prints linear CKA between the saved 2-D activations A and B of FILE (any safetensors file).
"""
import argparse
import sys

import numpy as np


def centered(gram):
    n = gram.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return h @ gram @ h


def hsic(x, y):
    return float(np.sum(centered(x @ x.T) * centered(y @ y.T)))


def linear_cka(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return hsic(x, y) / (np.sqrt(hsic(x, x)) * np.sqrt(hsic(y, y)))


def make_cases(rng):
    """(name, x, y): a spread of CKA values, shapes like pooled PreResNet stages (16/32/64
    channels; 64/128/256 bottleneck) and a batch that is not a multiple of anything."""
    cases = []
    # Two networks' stage features of one batch: y = a linear map of x plus noise (high CKA).
    x = rng.standard_normal((37, 16))
    cases.append(("related", x, x @ rng.standard_normal((16, 32)) + 0.5 * rng.standard_normal((37, 32))))
    # Independent features (low CKA), with non-zero means (centering matters).
    cases.append(("independent", rng.standard_normal((50, 64)) + 3.0, rng.standard_normal((50, 16)) - 1.0))
    # Post-ReLU-like non-negative features, wider than the batch (p > n).
    a = np.maximum(rng.standard_normal((24, 8)), 0)
    cases.append(("relu_wide", np.maximum(a @ rng.standard_normal((8, 64)), 0),
                  np.maximum(a @ rng.standard_normal((8, 256)) + rng.standard_normal((24, 256)), 0)))
    # Strongly scaled values: the ratio must not depend on magnitude.
    b = rng.standard_normal((16, 32))
    cases.append(("scaled", 1e3 * b, 1e-3 * (b + 0.1 * rng.standard_normal((16, 32)))))
    return cases


def write_golden(path):
    import torch  # only to hand tensors to tools/st.py, the canonical writer
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import st

    rng = np.random.default_rng(0)
    tensors, names = {}, []
    for name, x, y in make_cases(rng):
        names.append(name)
        tensors[name + ".x"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        tensors[name + ".y"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64))
        tensors[name + ".cka"] = torch.tensor(linear_cka(x, y), dtype=torch.float64)
        print(f"{name}: n={x.shape[0]} p={x.shape[1]} q={y.shape[1]} cka={linear_cka(x, y):.17g}")
    st.save(path, tensors, {"generator": "tools/cka_numpy.py", "numpy": np.__version__,
                            "cases": ",".join(names),
                            "description": "linear CKA (yuanli2333 CKA.py formula) of seeded "
                                           "activation pairs, numpy float64"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", help="write the golden file here")
    ap.add_argument("file", nargs="?")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    if args.golden:
        write_golden(args.golden)
        return
    if not args.file or len(args.names) != 2:
        ap.error("give --golden PATH, or FILE A B")
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import st
    tensors, _ = st.load(args.file)
    print(f"{linear_cka(tensors[args.names[0]].numpy(), tensors[args.names[1]].numpy()):.17g}")


if __name__ == "__main__":
    main()
