"""Tiny random stand-ins for the image metrics' model files, kept as test data for the end-to-end runs
(the Debian build has no Python packages to make them at test time):
  tests/data/metrics/inception_tiny.pt          a TorchScript module with the call of clean-fid's
      inception-2015-12-05.pt: a `layers` submodule (what clean-fid's InceptionV3W calls in mode
      "clean" on (x - 128) / 128) giving (N, 2048, 1, 1), and
      forward(img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False)
      taking float 0..255 images (resampled to 299 x 299 when they are not, bilinearly here; the real
      file uses grid_sample) and returning the 2048-d features, or class probabilities without
      return_features;
  tests/data/metrics/lpips_alex_tiny.safetensors  LPIPS AlexNet weights in scripts/export_lpips.py's
      layout (names of the lpips state dict, metadata format=ilf-lpips, net=alex) at reduced widths
      (16, 24, 32, 24, 24 channels instead of 64, 192, 384, 256, 256), random.
The scores these give are meaningless; they exercise the code paths. Run with Debian's python3
(python3-torch 1.13), so that LibTorch 1.13 loads the TorchScript file:
  python3 tests/metrics/make_image_metric_test_data.py
check_clean_fid.py imports TinyInception from here to build the same module with its own torch.
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "metrics")
FEATURES = 2048  # clean-fid's InceptionV3W views the features as (N, 2048)


class TinyInception(torch.nn.Module):
    def __init__(self, features: int = FEATURES, classes: int = 10):
        super().__init__()
        self.features = features
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, stride=4, padding=2), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=3), torch.nn.ReLU(),
            torch.nn.Conv2d(16, features, 1),
            torch.nn.AdaptiveAvgPool2d(1))
        self.output = torch.nn.Linear(features, classes)

    def forward(self, img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False):
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float32)
        if height != 299 or width != 299:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x - 128
        x = x / 128
        features = self.layers.forward(x).reshape(-1, self.features)
        if return_features:
            return features
        return F.softmax(self.output(features), dim=1)


def tiny_inception(seed=0):
    torch.manual_seed(seed)
    return torch.jit.script(TinyInception().eval())


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand (Debian's python3 has no safetensors package)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def tiny_lpips_alex(seed=0, widths=(16, 24, 32, 24, 24)):
    g = torch.Generator().manual_seed(seed)
    convs = [("net.slice1.0", 3, widths[0], 11), ("net.slice2.3", widths[0], widths[1], 5),
             ("net.slice3.6", widths[1], widths[2], 3), ("net.slice4.8", widths[2], widths[3], 3),
             ("net.slice5.10", widths[3], widths[4], 3)]
    tensors = {"scaling_layer.shift": torch.tensor([-.030, -.088, -.188]).reshape(1, 3, 1, 1),
               "scaling_layer.scale": torch.tensor([.458, .448, .450]).reshape(1, 3, 1, 1)}
    for name, cin, cout, k in convs:
        tensors[name + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * (cin * k * k) ** -0.5
        tensors[name + ".bias"] = torch.randn(cout, generator=g) * 0.1
    for i, c in enumerate(widths):
        tensors[f"lin{i}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g) * 0.1  # non-negative, as trained heads
    return tensors


def save_without_debug_info(module, path):
    """TorchScript's *.debug_pkl records hold the absolute path of this script (a machine path); they are
    optional for loading, so the archive is written again without them (entries stored, in order)."""
    import io
    import zipfile
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            if not info.filename.endswith(".debug_pkl"):
                out.writestr(info.filename, source.read(info.filename))


def main():
    os.makedirs(OUT, exist_ok=True)
    save_without_debug_info(tiny_inception(), os.path.join(OUT, "inception_tiny.pt"))
    write_safetensors(os.path.join(OUT, "lpips_alex_tiny.safetensors"), tiny_lpips_alex(),
                      {"format": "ilf-lpips", "net": "alex", "version": "0.1", "backbone": "random-reduced-width"})
    print(f"torch {torch.__version__}: wrote inception_tiny.pt and lpips_alex_tiny.safetensors to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
