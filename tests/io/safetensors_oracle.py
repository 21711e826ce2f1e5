#!/usr/bin/python3
"""PyTorch side of the safetensors oracle test (there is no `safetensors` package on
Debian, so the format is implemented here from the specification with torch.frombuffer).

  safetensors_oracle.py check FILE   # FILE (written by qiusuo) holds the expected tensors
  safetensors_oracle.py write FILE   # write the expected tensors for qiusuo to read

The expected tensors are defined by formulas that are bit-exact in IEEE arithmetic, so
test_safetensors_oracle.cpp computes the same values independently.
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def expected():
    f32 = (torch.arange(105, dtype=torch.float32) - 52) / 3
    f32[0], f32[1] = -0.0, float("inf")
    f64 = (torch.arange(24, dtype=torch.float64) - 12) / 7
    f64[5] = 1e300
    small = (torch.arange(9, dtype=torch.float32) - 4) / 3
    i64 = torch.arange(10, dtype=torch.int64) * 1000000007 - (1 << 40)
    return {
        "f32": f32.reshape(3, 5, 7),
        "f32_t": (torch.arange(35, dtype=torch.float32) / 7).reshape(5, 7).t().contiguous(),
        "f64": f64.reshape(4, 6),
        "bf16": small.to(torch.bfloat16),
        "f16": small.to(torch.float16),
        "i64": i64.reshape(2, 5),
        "bool": torch.arange(7) % 3 == 0,
    }


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = bytearray(buf[8 + n:])
    pos, out = 0, {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        assert b == pos, f"{name}: offsets not contiguous ({b} != {pos})"
        dt = DTYPES[e["dtype"]]
        count = end - b
        t = torch.frombuffer(data, dtype=torch.uint8, count=count, offset=b).clone()
        out[name] = t.view(dt).reshape(e["shape"])
        pos = end
    assert pos == len(data), f"data buffer {len(data)} bytes, tensors cover {pos}"
    return out, meta


def write(path, tensors, meta):
    header, blobs, pos = {"__metadata__": meta}, [], 0
    for name in sorted(tensors, reverse=True):  # a different order from qiusuo's
        t = tensors[name].contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def same_bits(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    exp = expected()
    if mode == "write":
        write(path, exp, {"writer": "torch", "torch": torch.__version__})
        return 0
    got, meta = read(path)
    bad = [k for k in exp if k not in got or not same_bits(got[k], exp[k])]
    for k in bad:
        print(f"MISMATCH {k}: expected {exp[k]}\nfound {got.get(k)}")
    if meta.get("writer") != "qiusuo":
        print(f"MISMATCH metadata: {meta}")
        bad.append("__metadata__")
    print("oracle:", "ok" if not bad else f"{len(bad)} mismatches", sorted(got))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
