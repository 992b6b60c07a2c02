"""LPIPS and SSIM: ours (src/eval/lpips.cpp) against the lpips 0.1.4 package and torchmetrics 1.9.

- LPIPS: lpips.LPIPS(net="alex") and (net="vgg"), version 0.1, with a random backbone (pnet_rand=True:
  no ImageNet weights reach this machine) and the linear heads the package ships, converted by
  scripts/export_lpips.py as a user would convert the real model; the package scores pairs of uint8
  images (lpips.im2tensor: x / 127.5 - 1) of two sizes (smooth images, noisy copies, an identical
  pair); ours through ilf_metric_probe lpips. Per-pair distances within 1e-5 relative.
- SSIM: torchmetrics' StructuralSimilarityIndexMeasure with its defaults, data_range=1.0 and
  reduction="none", on images / 255 (RGB and grey, two sizes); ours through ilf_metric_probe ssim.
  Per-image values within 1e-5 relative.
"""
import importlib.util
import os
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("exporter_common", os.path.join(HERE, "..", "exporters", "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
common.PIP_NAMES.update({"cleanfid": "clean-fid", "PIL": "pillow"})  # pip names of the modules checked here

TOLERANCE = 1e-5  # the float32 parity bound


def image_pairs(rng, n, h, w, channels=3):
    """uint8 (N, H, W, C) images and references: smooth patterns, noisy and shifted copies, one identical pair."""
    import numpy as np
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    images, references = [], []
    for i in range(n):
        planes = [127.5 + 120 * np.sin(2 * np.pi * ((i + 1) * x + (c + 1) * y * 0.7) + i + c) for c in range(channels)]
        a = np.clip(np.stack(planes, axis=-1) + rng.normal(0, 10, (h, w, channels)), 0, 255)
        noise = 0 if i == 0 else (i * 6)
        b = np.clip(a + rng.normal(0, noise + 1e-9, a.shape) + (i % 3) * 5, 0, 255)
        if i == 0:
            b = a.copy()
        images.append(np.round(a).astype(np.uint8))
        references.append(np.round(b).astype(np.uint8))
    return np.stack(images), np.stack(references)


def lpips_section(check, work):
    import numpy as np
    import torch
    import lpips
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    for net in ("alex", "vgg"):
        weights = os.path.join(work, f"lpips_{net}.safetensors")
        start = time.time()
        common.run(common.python_script("export_lpips.py") + ["--net", net, "--out", weights, "--random-backbone",
                                                               "--seed", "7"], "export_lpips.py")
        torch.manual_seed(7)  # the same random backbone as the exported one
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
        exported = load_file(weights)
        same = all(torch.equal(exported[k], v.float()) for k, v in model.state_dict().items() if not k.startswith("lins."))
        check.expect(f"lpips {net}: the exported file holds the package model's state dict", same)
        for h, w in ((64, 64), (67, 93)):
            images, references = image_pairs(rng, 5, h, w)
            with torch.no_grad():
                reference = torch.cat([model(lpips.im2tensor(a), lpips.im2tensor(b)).reshape(-1)
                                       for a, b in zip(images, references)])
            source, out = os.path.join(work, "lpips_in.safetensors"), os.path.join(work, "lpips_out.safetensors")
            save_file({"images": torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                       "references": torch.from_numpy(references.transpose(0, 3, 1, 2).copy())}, source)
            common.run([check.tool("ilf_metric_probe"), "lpips", "--weights", weights, "--in", source, "--out", out], "lpips")
            ours = load_file(out)["distances"]
            print(f"     lpips {net} {h}x{w}: package {[f'{v:.5f}' for v in reference.tolist()]}")
            check.expect_close(f"LPIPS {net} {h}x{w} (5 pairs) vs lpips.LPIPS", ours, reference.double(), TOLERANCE)
            check.expect(f"LPIPS {net} {h}x{w}: identical pair gives 0", float(ours[0]) == 0.0, f"{float(ours[0]):.3g}")
        print(f"     lpips {net}: {time.time() - start:.1f} s")


def ssim_section(check, work):
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    rng = np.random.default_rng(1)
    for channels, (h, w) in ((3, (64, 64)), (3, (37, 50)), (1, (48, 40))):
        images, references = image_pairs(rng, 6, h, w, channels)
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        y = torch.from_numpy(references.transpose(0, 3, 1, 2).copy())
        metric = StructuralSimilarityIndexMeasure(data_range=1.0, reduction="none")
        reference = metric(x.float() / 255, y.float() / 255)
        source, out = os.path.join(work, "ssim_in.safetensors"), os.path.join(work, "ssim_out.safetensors")
        save_file({"images": x, "references": y}, source)
        common.run([check.tool("ilf_metric_probe"), "ssim", "--in", source, "--out", out], "ssim")
        ours = load_file(out)["ssim"]
        check.expect_close(f"SSIM C={channels} {h}x{w} (6 pairs) vs torchmetrics", ours, reference.double(), TOLERANCE)
        check.expect(f"SSIM C={channels} {h}x{w}: identical pair gives 1", abs(float(ours[0]) - 1) < 1e-6,
                     f"{float(ours[0]):.9f}")


def main():
    check = common.Check(__doc__, ["torch", "numpy", "lpips", "torchmetrics", "torchvision", "safetensors"])
    work = os.path.join(check.build, "test_scratch", "metrics", "lpips_ssim")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for section in (lpips_section, ssim_section):
        start = time.time()
        section(check, work)
        print(f"     {section.__name__}: {time.time() - start:.1f} s")
    check.finish()


if __name__ == "__main__":
    main()
