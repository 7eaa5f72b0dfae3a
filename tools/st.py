"""Minimal safetensors writer/reader for torch tensors (Debian has no safetensors package).

Writes the same canonical layout as engine/safetensors.cpp (compact JSON, "__metadata__" first with sorted keys,
tensors in the given order with contiguous offsets, header padded with spaces to a multiple of 8),
so the C++ encoder reproduces these files byte for byte (tests/test_safetensors.cpp checks it).
"""
import json
import struct

import numpy as np
import torch

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64",
           torch.int32: "I32", torch.uint8: "U8"}
_NUMPY = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def save(path, tensors, metadata=None):
    """tensors: ordered dict name -> torch tensor; metadata: dict str -> str."""
    header, blobs, offset = {}, [], 0
    if metadata:
        # Sorted like the C++ std::map, so both writers produce identical bytes.
        header["__metadata__"] = {str(k): str(metadata[k]) for k in sorted(metadata)}
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {t.dtype}")
        data = t.detach().cpu().contiguous().numpy()
        blob = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load(path):
    """Returns (dict name -> torch tensor in buffer order, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.dtype(_NUMPY[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(_NUMPY[info["dtype"]]).reshape(info["shape"]).copy())
    return out, metadata
