"""safetensors: files written by the real safetensors library, read by ilf::read_safetensors bit-exactly.

The library writes files of float32, float16 and bfloat16 tensors (ordinary values, zeros of both signs,
infinities, NaNs with payloads, subnormals, the extremes), the other dtypes our reader supports (float64,
int64, int32, int16, int8, uint8, bool), 0-d, empty and odd-shaped tensors, many tensors, and metadata
(ASCII and non-ASCII). ilf_export_probe reads each file with ilf::read_safetensors and writes what it read
with ilf::write_safetensors; the library then reads that file back: every tensor must have the same dtype,
shape and bytes, and the metadata must be the same.
"""
import os

from common import Check, run


def tensors_for(torch, dtype, generator):
    """Named tensors of one dtype, covering the values whose bits are easy to lose."""
    if dtype.is_floating_point:
        info = torch.finfo(dtype)
        special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), info.max, -info.max, info.tiny,
                                info.tiny / 4, -info.tiny / 8, info.eps, 1.0 / 3.0], dtype=torch.float64).to(dtype)
        nan_payload = special.clone()
        bits = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float64: torch.int64}
        nan_payload.view(bits[dtype])[4] += 3  # another NaN bit pattern
        return {"special": special, "nan_payload": nan_payload,
                "randn": (torch.randn(3, 5, 7, generator=generator) * 100).to(dtype),
                "scalar": torch.tensor(2.5, dtype=dtype), "empty": torch.zeros(0, 4, dtype=dtype),
                "row": torch.linspace(-1, 1, 33, dtype=torch.float64).to(dtype)}
    if dtype == torch.bool:
        return {"mask": torch.rand(4, 9, generator=generator) > 0.5, "scalar": torch.tensor(True)}
    info = torch.iinfo(dtype)
    return {"extremes": torch.tensor([info.min, info.max, 0, -1 if info.min < 0 else 1], dtype=dtype),
            "random": torch.randint(info.min, info.max, (2, 3, 4), generator=generator, dtype=torch.int64).to(dtype)
            if dtype != torch.int64 else torch.randint(-2**62, 2**62, (2, 3, 4), generator=generator),
            "scalar": torch.tensor(7, dtype=dtype), "empty": torch.zeros(0, dtype=dtype)}


def same_bits(torch, a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    as_bytes = lambda t: t.contiguous().reshape(-1).view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
    return torch.equal(as_bytes(a), as_bytes(b))


def main():
    check = Check(__doc__.splitlines()[0], ["torch", "safetensors"])
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    work = check.work_dir("safetensors")
    generator = torch.Generator().manual_seed(6)
    metadata = {"format": "pt", "source": "tests/exporters/check_safetensors.py", "note": "non-ASCII: é 東京 ✓",
                "empty": ""}
    files = {
        "float32": {f"f32.{k}": v for k, v in tensors_for(torch, torch.float32, generator).items()},
        "float16": {f"f16.{k}": v for k, v in tensors_for(torch, torch.float16, generator).items()},
        "bfloat16": {f"bf16.{k}": v for k, v in tensors_for(torch, torch.bfloat16, generator).items()},
        "mixed": {f"{name}.{k}": v for name, dtype in [("f64", torch.float64), ("f32", torch.float32), ("f16", torch.float16),
                                                        ("bf16", torch.bfloat16), ("i64", torch.int64), ("i32", torch.int32),
                                                        ("i16", torch.int16), ("i8", torch.int8), ("u8", torch.uint8),
                                                        ("bool", torch.bool)]
                  for k, v in tensors_for(torch, dtype, generator).items()},
        # Many tensors: a long header, and names the library orders differently than they were given.
        "many": {f"blocks.{i}.{part}": torch.randn(i % 5 + 1, 3, generator=generator).to(dtype)
                 for i in range(300) for part, dtype in [("weight", torch.bfloat16), ("bias", torch.float32)]},
    }
    for name, tensors in files.items():
        for with_metadata in (True, False):
            source = os.path.join(work, f"{name}{'_meta' if with_metadata else ''}.safetensors")
            save_file(tensors, source, metadata=metadata if with_metadata else None)
            copy = os.path.join(work, f"{name}{'_meta' if with_metadata else ''}.copy.safetensors")
            run([check.tool("ilf_export_probe"), "copy-safetensors", "--in", source, "--out", copy],
                "ilf_export_probe copy-safetensors")
            with safe_open(copy, framework="pt") as f:
                read_back = {k: f.get_tensor(k) for k in f.keys()}
                read_metadata = f.metadata() or {}
            wrong = sorted(k for k, v in tensors.items() if k not in read_back or not same_bits(torch, v, read_back[k]))
            extra = sorted(set(read_back) - set(tensors))
            dtypes = sorted({str(v.dtype).replace("torch.", "") for v in tensors.values()})
            check.expect(f"{os.path.basename(source)}: {len(tensors)} tensors ({', '.join(dtypes)}) bit-exact",
                         not wrong and not extra, f"differ: {wrong[:5]}, unexpected: {extra[:5]}" if wrong or extra else "")
            expected = metadata if with_metadata else {}
            check.expect(f"{os.path.basename(source)}: metadata ({len(expected)} entries)", read_metadata == expected,
                         "" if read_metadata == expected else f"read back {read_metadata!r}")
    check.finish()


if __name__ == "__main__":
    main()
