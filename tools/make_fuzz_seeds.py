#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/, see tests/fuzz/).

Seeds are small valid inputs plus a few near-misses, so the fuzzer starts inside each format
rather than guessing magic numbers; `make test` replays them all (ctest Fuzz.Replay.*). Run from
the repository root; rerunning rewrites the same files (deterministic). Inputs that once crashed
live in tests/fuzz/crashes/<target>/ and are never written here.
"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
FMNIST = "/usr/share/datasets/fashion-mnist"


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def idx_images(n, h, w, fill=None):
    pixels = bytes(fill if fill is not None else (i * 37) % 256 for i in range(n * h * w))
    return struct.pack(">IIII", 0x803, n, h, w) + pixels


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_seeds():
    # First byte: bit 0 = the harness gzips the rest, bit 1 = labels (fuzz_idx.cpp).
    put("idx", "images_raw", b"\x00" + idx_images(2, 3, 4))
    put("idx", "images_gz_by_harness", b"\x01" + idx_images(3, 2, 2))
    put("idx", "images_gz_stream", b"\x00" + gz(idx_images(2, 4, 4)))
    put("idx", "images_empty", b"\x00" + idx_images(0, 28, 28))
    put("idx", "images_truncated", b"\x00" + idx_images(2, 3, 4)[:-5])
    put("idx", "images_trailing", b"\x00" + idx_images(1, 2, 2) + b"xx")
    put("idx", "images_wrong_magic", b"\x00" + idx_labels([1, 2, 3]))
    put("idx", "images_huge_header", b"\x00" + struct.pack(">IIII", 0x803, 0x7FFFFFFF, 28, 28))
    put("idx", "labels_raw", b"\x02" + idx_labels([0, 1, 2, 9]))
    put("idx", "labels_gz_by_harness", b"\x03" + idx_labels([5, 5, 3]))
    put("idx", "labels_gz_stream", b"\x02" + gz(idx_labels([7, 8])))
    put("idx", "labels_out_of_range", b"\x02" + idx_labels([0, 10]))
    put("idx", "labels_cut_gz_stream", b"\x02" + gz(idx_labels(list(range(10)) * 4))[:-6])
    if os.path.isdir(FMNIST):  # two real images and their labels, cut from the test split
        with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
            head = f.read(16 + 2 * 784)
        put("idx", "fmnist_two_images", b"\x01" + struct.pack(">IIII", 0x803, 2, 28, 28) + head[16:])
        with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
            labels = f.read(8 + 16)[8:]
        put("idx", "fmnist_sixteen_labels", b"\x03" + idx_labels(list(labels)))


def cifar_seeds():
    # First byte: even = CIFAR-10 (1 label byte), odd = CIFAR-100 (coarse, fine) (fuzz_cifar.cpp).
    pixels = bytes((i * 7) % 256 for i in range(3072))
    put("cifar", "cifar10_two", b"\x00" + bytes([3]) + pixels + bytes([9]) + pixels[::-1])
    put("cifar", "cifar10_bad_label", b"\x00" + bytes([10]) + pixels)
    put("cifar", "cifar10_truncated", b"\x00" + bytes([1]) + pixels[:100])
    put("cifar", "cifar100_one", b"\x01" + bytes([19, 99]) + pixels)
    put("cifar", "cifar100_bad_coarse", b"\x01" + bytes([20, 5]) + pixels)
    put("cifar", "empty", b"\x00")


def png(width, height, channels, pixels):
    color = {1: 0, 3: 2, 4: 6, 2: 4}[channels]
    raw = b"".join(b"\x00" + pixels[y * width * channels:(y + 1) * width * channels]
                   for y in range(height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bmp(width, height, pixels_rgb):
    row = (width * 3 + 3) & ~3
    data = b""
    for y in range(height - 1, -1, -1):
        line = b"".join(bytes(pixels_rgb[(y * width + x) * 3:(y * width + x) * 3 + 3][::-1])
                        for x in range(width))
        data += line + b"\x00" * (row - len(line))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


def image_seeds():
    # First byte: bits 0-1 extension (png, jpg, bmp, jpeg), bits 2-3 --resize (0, 8, 32, 0)
    # (fuzz_image_folder.cpp).
    grey = bytes((i * 29) % 256 for i in range(4 * 3))
    rgb = bytes((i * 13) % 256 for i in range(5 * 4 * 3))
    put("image_folder", "png_grey", b"\x00" + png(4, 3, 1, grey))
    put("image_folder", "png_rgb_resize8", b"\x04" + png(5, 4, 3, rgb))
    put("image_folder", "png_rgba_refused", b"\x00" + png(2, 2, 4, bytes(range(16))))
    put("image_folder", "png_grey_alpha_resize32", b"\x08" + png(2, 2, 2, bytes(range(8))))
    put("image_folder", "bmp_rgb", b"\x02" + bmp(5, 4, rgb))
    put("image_folder", "bmp_rgb_resize8", b"\x06" + bmp(3, 3, rgb[:27]))
    put("image_folder", "png_named_jpg", b"\x01" + png(3, 1, 1, b"\x01\x02\x03"))
    put("image_folder", "not_an_image", b"\x00not a png at all")


def safetensors(entries, metadata=None):
    header, buf = {}, b""
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(data)]}
        buf += data
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + buf


def safetensors_seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    put("safetensors", "f32_2x2", safetensors([("w", "F32", [2, 2], f32)]))
    put("safetensors", "mixed", safetensors([
        ("a", "F64", [2], struct.pack("<2d", 1.5, -1.0)), ("b", "I64", [1], struct.pack("<q", -7)),
        ("c", "I32", [3], struct.pack("<3i", 1, 2, 3)), ("d", "U8", [2, 1], b"\x05\x06"),
        ("e", "F32", [], struct.pack("<f", 2.0)), ("f", "F32", [0, 3], b"")],
        {"format": "kdlab-checkpoint-1", "note": "seed"}))
    put("safetensors", "metadata_only", safetensors([], {"k": "v"}))
    put("safetensors", "offsets_overlap",
        safetensors([("w", "F32", [1], f32[:4]), ("v", "F32", [1], f32[:4])]).replace(b"[4,8]", b"[0,4]"))
    put("safetensors", "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")
    put("safetensors", "unknown_dtype", safetensors([("w", "BF16", [2], b"\x00" * 4)]))
    put("safetensors", "empty", b"")


def lenet5_tensors(classes, channels):
    shapes = {"0.weight": [6, channels, 5, 5], "0.bias": [6], "3.weight": [16, 6, 5, 5],
              "3.bias": [16], "7.weight": [120, 400], "7.bias": [120], "9.weight": [84, 120],
              "9.bias": [84], "11.weight": [classes, 84], "11.bias": [classes]}
    return shapes


def checkpoint_seeds():
    meta = {"format": "kdlab-checkpoint-1", "model": "lenet5", "num_classes": "10",
            "in_channels": "1", "image_size": "28", "normalization_mean": "[0.286]",
            "normalization_std": "[0.353]"}
    put("checkpoint", "lenet5_ok", json.dumps({"metadata": meta, "tensors": lenet5_tensors(10, 1)}))
    put("checkpoint", "lenet5_3ch_5cls", json.dumps({"metadata": dict(
        meta, num_classes="5", in_channels="3", normalization_mean="[0.5, 0.5, 0.5]",
        normalization_std="[0.25, 0.25, 0.25]"), "tensors": lenet5_tensors(5, 3)}))
    put("checkpoint", "lenet5_head_mismatch", json.dumps({"metadata": meta, "tensors": lenet5_tensors(7, 1)}))
    put("checkpoint", "lenet5_no_tensors", json.dumps({"metadata": meta}))
    put("checkpoint", "preresnet8_meta", json.dumps({"metadata": dict(
        meta, model="preresnet8", image_size="32", in_channels="3",
        normalization_mean="[0.1, 0.2, 0.3]", normalization_std="[1, 1, 1]"),
        "tensors": {"conv1.weight": [16, 3, 3, 3]}}))
    put("checkpoint", "bad_values", json.dumps({"metadata": dict(
        meta, num_classes="1e3", normalization_std="[0]", image_size="-28")}))
    put("checkpoint", "unknown_model", json.dumps({"metadata": dict(meta, model="resnet9000")}))
    put("checkpoint", "wrong_format", json.dumps({"metadata": dict(meta, format="kdlab-checkpoint-0")}))


def study_seeds():
    # Three presets only: the full ones plan hundreds of runs, each parsed by the CLI (seconds per
    # input under ASan), which would starve the fuzzer. "compact" packs their features small.
    for name in ("fig1-gan", "table2-imagenet-imdb", "fmnist-study"):
        put("study", "preset_" + name + ".json", open(os.path.join(ROOT, "presets", name + ".json"), "rb").read())
    put("study", "compact", json.dumps({
        "kdlab_study": 1, "name": "compact", "title": "t", "default_scale": "tiny",
        "vars": {"seed": 0, "sizes": [100, 200], "members": 2, "ms": [1, 2], "e": 2},
        "scales": {"tiny": {"note": "n", "vars": {"e": 1}}, "paper": {"note": "p"}},
        "defaults": {"train": {"model": "lenet5", "batch": 64}, "distill": {"alpha": 0}},
        "runs": [
            {"id": "t${i}", "command": "train", "for": {"i": {"range": "${members}"}},
             "flags": {"epochs": "${e * 2 - 1}", "seed": "${seed + 300 + i}", "hflip": True}},
            {"id": "s-${n}-m${m}", "command": "distill", "for": {"n": "${sizes}", "m": "${ms}"},
             "flags": {"teacher": "@t[0:${m}]", "distill-size": "${n}", "tau": "${(m + 1) / 2}"}},
            {"id": "ev", "command": "eval", "after": ["t0"],
             "flags": {"model": "@s-100-m1", "teacher": "@t1"}}],
        "slurm": {"gpus": 1, "cpus": 4, "time": "01:00:00"},
        "table": {"columns": [{"name": "acc", "value": "test.accuracy", "format": "percent"}],
                  "rows": [{"for": {"n": "${sizes}"}, "label": "n=${n}", "run": "s-${n}-m1"}]},
        "findings": [{"claim": "c", "check": "above", "what": "acc", "value": "@s-100-m1:test.accuracy", "threshold": 0.5}, {"claim": "d", "check": "rises", "what": "acc", "series": {"for": {"n": "${sizes}"}, "value": "@s-${n}-m1:test.accuracy", "label": "${n}"}}]}, indent=1))
    put("study", "minimal", json.dumps({
        "name": "mini", "title": "t", "vars": {"epochs": 2},
        "runs": [{"id": "teacher", "command": "train", "flags": {"model": "lenet5", "epochs": "${epochs}"}},
                 {"id": "student", "command": "distill", "flags": {"teacher": "@teacher", "tau": "${2*2}"}},
                 {"id": "eval", "command": "eval", "flags": {"model": "@student"}, "after": ["teacher"]}]}))
    put("study", "syntax_error", '{"name": "x", "runs": [')
    put("study", "cycle", json.dumps({"name": "c", "runs": [
        {"id": "a", "command": "train", "after": ["b"]}, {"id": "b", "command": "train", "after": ["a"]}]}))


def cli_seeds():
    put("cli", "train", "train\n--model\nlenet5\n--epochs\n2\n--lr\n0.1\n--batch\n64")
    put("cli", "train_eq", "train\n--model=preresnet20\n--pad-to=32\n--crop-pad=4\n--hflip\n--subset-per-class=20")
    put("cli", "distill", "distill\n--teacher\nt.safetensors\n--tau\n4\n--alpha\n0.5\n--loss\nkl")
    put("cli", "eval", "eval\n--model\nm.safetensors\n--test-size\n100")
    put("cli", "bad_number", "train\n--epochs\n-3\n--lr\nnan")
    put("cli", "unknown_command", "fly\n--to\nmoon")
    put("cli", "unknown_flag", "train\n--no-such-flag")


if __name__ == "__main__":
    for make in (idx_seeds, cifar_seeds, image_seeds, safetensors_seeds, checkpoint_seeds,
                 study_seeds, cli_seeds):
        make()
    for target in sorted(os.listdir(CORPUS)):
        print(target, len(os.listdir(os.path.join(CORPUS, target))))
