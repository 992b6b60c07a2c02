"""PIL's resize and clean-fid's FID: ours (src/eval/pil_resize.cpp, src/eval/clean_fid.cpp) against
Pillow and clean-fid 0.1.35 themselves.

Sections:
- PIL resize: Image.resize of random and smooth images, modes L / RGB / RGBA (uint8) and F (float32),
  filters nearest / bilinear / bicubic / lanczos, sizes up and down (the 299 x 299 of clean-fid, CLIP's
  224, 1 x 1, a 3 x 1000 strip, one axis unchanged): uint8 results must be equal (0 differing values),
  float results within 1e-6 relative.
- clean-fid's resize (cleanfid.resize.build_resizer("clean")) of uint8 images of several sizes against
  ours (clean_fid_resize), 1e-6 relative.
- features, statistics and distance: a small random module with the Inception TorchScript file's call
  (forward(x, return_features: bool)), saved as TorchScript; clean-fid computes the features of two
  folders of PNGs through its own API (fid.get_folder_features with the module as custom feature
  extractor, mode "clean") and fid.frechet_distance; ours through ilf_fid_stats and the probe. Features,
  mu, sigma and the distance within 1e-5 relative.
- the .npz statistics files both ways: numpy reads ours (np.load), we read numpy's (np.savez and
  np.savez_compressed, float64 and float32, .npy format versions 1, 2 and 3).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("exporter_common", os.path.join(HERE, "..", "exporters", "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
common.PIP_NAMES.update({"cleanfid": "clean-fid", "PIL": "pillow"})  # pip names of the modules checked here

FLOAT_TOLERANCE = 1e-6    # PIL "F" resize: same operations in the same order; measured 0 here
FEATURE_TOLERANCE = 1e-5  # the float32 parity bound for features, statistics and distances

# (input height, input width, output height, output width)
RESIZE_SIZES = [
    (150, 97, 299, 299),    # upscale, clean-fid
    (512, 512, 299, 299),   # downscale, clean-fid on a 512 image
    (1, 1, 7, 5),           # one pixel up
    (9, 11, 1, 1),          # down to one pixel
    (1000, 3, 299, 299),    # a 3 x 1000 strip
    (480, 640, 298, 224),   # CLIP-like downscale, aspect changed
    (64, 48, 64, 131),      # one axis unchanged (horizontal pass only)
    (37, 300, 80, 300),     # one axis unchanged (vertical pass only)
    (256, 256, 224, 224),   # slight downscale
    (17, 23, 299, 299),     # strong upscale
]
FILTERS = {"nearest": 0, "bilinear": 1, "bicubic": 2, "lanczos": 3}


def test_images(rng, height, width, channels, kind):
    """uint8 (H, W, C): uniform noise, or a smooth gradient with sines (where rounding matters most)."""
    import numpy as np
    if kind == "random":
        return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    y, x = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    planes = [127.5 + 127.5 * np.sin(2 * np.pi * (x * (c + 1) + y * (2 - c * 0.5)) + c) for c in range(channels)]
    return np.clip(np.round(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)


def pil_section(check, work):
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    cases, expected = {}, {}
    modes = {"L": 1, "RGB": 3, "RGBA": 4}
    for index, (h, w, oh, ow) in enumerate(RESIZE_SIZES):
        for kind in ("random", "smooth"):
            for mode, channels in modes.items():
                image = test_images(rng, h, w, channels, kind)
                if mode == "RGBA" and kind == "smooth":
                    image[..., 3] = rng.integers(0, 256, size=(h, w))  # varied alpha: premultiplication matters
                pil = Image.fromarray(image[..., 0] if channels == 1 else image, mode)
                for name, code in FILTERS.items():
                    key = f"{index}.{kind}.{mode}.{name}"
                    cases[key + ".image"] = torch.from_numpy(image.copy())
                    cases[key + ".spec"] = torch.tensor([oh, ow, code], dtype=torch.int64)
                    out = np.asarray(pil.resize((ow, oh), resample=getattr(Image.Resampling, name.upper())))
                    expected[key] = torch.from_numpy(out.reshape(oh, ow, channels).copy())
            # mode F: uint8 values as float (clean-fid), and arbitrary floats
            for fkind in ("bytes", "normal"):
                values = (test_images(rng, h, w, 1, kind)[..., 0].astype(np.float32) if fkind == "bytes"
                          else (rng.standard_normal((h, w)) * 100).astype(np.float32))
                pil = Image.fromarray(values, mode="F")
                for name, code in FILTERS.items():
                    key = f"{index}.{kind}.F{fkind}.{name}"
                    cases[key + ".image"] = torch.from_numpy(values.copy())
                    cases[key + ".spec"] = torch.tensor([oh, ow, code], dtype=torch.int64)
                    out = np.asarray(pil.resize((ow, oh), resample=getattr(Image.Resampling, name.upper())))
                    expected[key] = torch.from_numpy(out.copy())
    inputs, outputs = os.path.join(work, "pil_in.safetensors"), os.path.join(work, "pil_out.safetensors")
    save_file(cases, inputs)
    start = time.time()
    common.run([check.tool("ilf_metric_probe"), "pil-resize", "--in", inputs, "--out", outputs], "pil-resize")
    ours = load_file(outputs)
    print(f"     pil-resize: {len(expected)} cases, C++ time {time.time() - start:.1f} s")
    uint8_cases = uint8_values = uint8_differences = 0
    float_error, float_abs, float_cases = 0.0, 0.0, 0
    failed = []
    for key, reference in expected.items():
        mine = ours.get(key + ".out")
        if mine is None or mine.shape != reference.shape or mine.dtype != reference.dtype:
            failed.append(f"{key}: shape/dtype {None if mine is None else (tuple(mine.shape), mine.dtype)} "
                          f"vs {(tuple(reference.shape), reference.dtype)}")
            continue
        if reference.dtype == torch.uint8:
            differences = int((mine != reference).sum())
            uint8_cases += 1
            uint8_values += reference.numel()
            uint8_differences += differences
            if differences:
                failed.append(f"{key}: {differences} differing values, max |diff| "
                              f"{int((mine.int() - reference.int()).abs().max())}")
        else:
            float_cases += 1
            float_error = max(float_error, common.relative_error(mine, reference))
            float_abs = max(float_abs, float((mine.double() - reference.double()).abs().max()))
    for line in failed[:20]:
        print("     " + line)
    check.expect("PIL resize uint8 (L, RGB, RGBA) equals Pillow", uint8_differences == 0 and not failed,
                 f"{uint8_cases} cases, {uint8_values} values, {uint8_differences} differ")
    ok = float_error <= FLOAT_TOLERANCE and not failed
    check.expect("PIL resize float (mode F) equals Pillow", ok,
                 f"{float_cases} cases, max relative error {float_error:.2e}, max abs {float_abs:.2e} "
                 f"(tolerance {FLOAT_TOLERANCE:.0e})")


def clean_fid_resize_section(check, work):
    """cleanfid.resize.build_resizer("clean") on uint8 RGB images of several sizes vs clean_fid_resize."""
    import numpy as np
    import torch
    from cleanfid.resize import build_resizer
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(1)
    resize = build_resizer("clean")
    inputs, expected = {}, {}
    for index, (h, w) in enumerate([(512, 512), (150, 97), (299, 299), (1, 1), (1000, 3), (480, 640), (64, 64)]):
        images = np.stack([test_images(rng, h, w, 3, kind) for kind in ("random", "smooth")])  # (2, H, W, 3)
        inputs[f"case{index}"] = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        expected[f"case{index}"] = torch.from_numpy(np.stack([resize(image).transpose(2, 0, 1) for image in images]))
    source, result = os.path.join(work, "resize_in.safetensors"), os.path.join(work, "resize_out.safetensors")
    save_file(inputs, source)
    common.run([check.tool("ilf_metric_probe"), "clean-fid-resize", "--in", source, "--out", result], "clean-fid-resize")
    ours = load_file(result)
    error = max(common.relative_error(ours[k], expected[k]) for k in expected)
    absolute = max(float((ours[k].double() - expected[k].double()).abs().max()) for k in expected)
    check.expect("clean-fid resize (7 sizes x 2 images) equals cleanfid.resize", error <= FLOAT_TOLERANCE,
                 f"max relative error {error:.2e}, max abs {absolute:.2e} (tolerance {FLOAT_TOLERANCE:.0e})")


def write_png_folder(folder, rng, count, offset):
    """PNGs of several sizes and modes (RGB, RGBA, L, P), as a user's folder may hold; one in a subfolder."""
    import numpy as np
    from PIL import Image
    os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
    sizes = [(64, 64), (80, 48), (299, 299), (33, 47), (128, 96)]
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        image = test_images(rng, h, w, 3, "random" if i % 2 else "smooth")
        image = np.clip(image.astype(np.int32) + offset, 0, 255).astype(np.uint8)
        pil = Image.fromarray(image, "RGB")
        if i % 7 == 3:
            pil = pil.convert("RGBA")
        elif i % 7 == 5:
            pil = pil.convert("L")
        elif i % 7 == 6:
            pil = pil.convert("P")
        name = os.path.join(folder, "sub" if i % 9 == 4 else "", f"img_{i:03d}.png")
        pil.save(name)


def features_section(check, work):
    """clean-fid's own folder features (InceptionV3W around our tiny TorchScript module saved as
    inception-2015-12-05.pt) and statistics and distance vs ours, and the .npz files both ways."""
    import numpy as np
    import torch
    from cleanfid import fid
    from cleanfid.inception_torchscript import InceptionV3W
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("make_image_metric_test_data",
                                                  os.path.join(HERE, "make_image_metric_test_data.py"))
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    model_dir = os.path.join(work, "inception")
    os.makedirs(model_dir)
    data.tiny_inception(seed=3).save(os.path.join(model_dir, "inception-2015-12-05.pt"))
    model_file = os.path.join(model_dir, "inception-2015-12-05.pt")
    wrapper = InceptionV3W(model_dir, download=False, resize_inside=False).eval()  # clean-fid's own call

    rng = np.random.default_rng(2)
    folders = [os.path.join(work, "folder_a"), os.path.join(work, "folder_b")]
    write_png_folder(folders[0], rng, 20, 0)
    write_png_folder(folders[1], rng, 17, 40)
    stats = []
    for index, folder in enumerate(folders):
        start = time.time()
        reference = fid.get_folder_features(folder, model=wrapper, num_workers=0, batch_size=6,
                                            device=torch.device("cpu"), mode="clean", verbose=False)
        reference_time = time.time() - start
        out = os.path.join(work, f"features_{index}.safetensors")
        start = time.time()
        common.run([check.tool("ilf_metric_probe"), "fid-folder", "--images", folder, "--inception", model_file,
                    "--batch", "5", "--out", out], "fid-folder")
        ours_time = time.time() - start
        ours = load_file(out)
        print(f"     folder {index}: {reference.shape[0]} images, clean-fid {reference_time:.1f} s, ours {ours_time:.1f} s")
        check.expect_close(f"folder {index}: Inception features (N, 2048) vs clean-fid get_folder_features",
                           ours["features"], torch.from_numpy(reference), FEATURE_TOLERANCE)
        mu = np.mean(reference, axis=0)
        sigma = np.cov(reference, rowvar=False)
        check.expect_close(f"folder {index}: mu vs np.mean", ours["mu"], torch.from_numpy(mu.astype(np.float64)),
                           FEATURE_TOLERANCE)
        check.expect_close(f"folder {index}: sigma vs np.cov", ours["sigma"], torch.from_numpy(sigma), FEATURE_TOLERANCE)
        stats.append((mu, sigma))
    # a TorchScript file without `layers`: called as forward(x, return_features=True), the real file's
    # own entry point; clean-fid given the same call as its custom feature extractor
    class Blocks(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.blocks = inner.layers

        def forward(self, img, return_features: bool = False):
            features = self.blocks((img - 128) / 128).reshape(img.shape[0], -1)
            return features if return_features else features.softmax(1)
    torch.manual_seed(5)
    plain = torch.jit.script(Blocks(data.TinyInception()).eval())
    plain_file = os.path.join(work, "inception_without_layers.pt")
    plain.save(plain_file)
    reference = fid.get_folder_features(folders[0], model=lambda x: plain(x, return_features=True), num_workers=0,
                                        batch_size=8, device=torch.device("cpu"), mode="clean", verbose=False)
    out = os.path.join(work, "features_plain.safetensors")
    common.run([check.tool("ilf_metric_probe"), "fid-folder", "--images", folders[0], "--inception", plain_file,
                "--batch", "8", "--out", out], "fid-folder")
    check.expect_close("folder 0, a file without `layers` (forward(x, return_features=True)) vs clean-fid with it as "
                       "custom extractor", load_file(out)["features"], torch.from_numpy(reference), FEATURE_TOLERANCE)

    start = time.time()
    reference_distance = fid.frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    print(f"     clean-fid frechet_distance (2048-d, rank-deficient covariances): {time.time() - start:.1f} s")

    # ilf_fid_stats writes the files; numpy reads them; the probe reads them back for the distance
    npz = []
    for index, folder in enumerate(folders):
        path = os.path.join(work, f"stats_{index}.npz")
        common.run([check.tool("ilf_fid_stats"), "--images", folder, "--inception", model_file, "--out", path,
                    "--batch", "4"], "ilf_fid_stats")
        loaded = np.load(path)
        check.expect(f"stats_{index}.npz (ilf_fid_stats) loads in numpy with mu (2048,) and sigma (2048, 2048) float64",
                     sorted(loaded.files) == ["mu", "sigma"] and loaded["mu"].shape == (2048,)
                     and loaded["sigma"].shape == (2048, 2048) and loaded["sigma"].dtype == np.float64)
        check.expect_close(f"stats_{index}.npz mu vs clean-fid's", torch.from_numpy(loaded["mu"]),
                           torch.from_numpy(stats[index][0].astype(np.float64)), FEATURE_TOLERANCE)
        check.expect_close(f"stats_{index}.npz sigma vs clean-fid's", torch.from_numpy(loaded["sigma"]),
                           torch.from_numpy(stats[index][1]), FEATURE_TOLERANCE)
        npz.append(path)
    out = os.path.join(work, "distance.safetensors")
    common.run([check.tool("ilf_metric_probe"), "fid-distance", "--a", npz[0], "--b", npz[1], "--out", out], "fid-distance")
    check.expect_close("FID between the folders (ilf_fid_stats files) vs clean-fid frechet_distance",
                       load_file(out)["distance"], torch.tensor([float(reference_distance)], dtype=torch.float64),
                       FEATURE_TOLERANCE)
    # clean-fid's own statistics files (np.savez_compressed of its float32 mu and float64 sigma) read by us
    theirs = [os.path.join(work, f"cleanfid_stats_{i}.npz") for i in range(2)]
    for path, (mu, sigma) in zip(theirs, stats):
        np.savez_compressed(path, mu=mu, sigma=sigma)
    common.run([check.tool("ilf_metric_probe"), "fid-distance", "--a", theirs[0], "--b", theirs[1], "--out", out],
               "fid-distance")
    check.expect_close("FID from clean-fid's own .npz files (float32 mu) vs clean-fid frechet_distance",
                       load_file(out)["distance"], torch.tensor([float(reference_distance)], dtype=torch.float64),
                       FEATURE_TOLERANCE)


def frechet_section(check, work):
    """feature_statistics and frechet_distance on full-rank statistics (64-d, 300 samples) vs np.mean,
    np.cov and clean-fid's frechet_distance (scipy sqrtm)."""
    import numpy as np
    import torch
    from cleanfid import fid
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(4)
    mixing = rng.standard_normal((64, 64)) / 8
    a = (rng.standard_normal((300, 64)) @ mixing).astype(np.float32)
    b = (rng.standard_normal((280, 64)) @ (mixing + rng.standard_normal((64, 64)) / 20) + 0.3).astype(np.float32)
    source, out = os.path.join(work, "features.safetensors"), os.path.join(work, "statistics.safetensors")
    save_file({"a": torch.from_numpy(a), "b": torch.from_numpy(b)}, source)
    common.run([check.tool("ilf_metric_probe"), "fid-statistics", "--in", source, "--out", out], "fid-statistics")
    ours = load_file(out)
    for name, x in (("a", a), ("b", b)):
        check.expect_close(f"mu_{name} (64-d) vs np.mean (float64)", ours[f"mu_{name}"],
                           torch.from_numpy(np.mean(x.astype(np.float64), axis=0)), FEATURE_TOLERANCE)
        check.expect_close(f"sigma_{name} (64-d) vs np.cov", ours[f"sigma_{name}"],
                           torch.from_numpy(np.cov(x, rowvar=False)), FEATURE_TOLERANCE)
    reference = fid.frechet_distance(np.mean(a, axis=0), np.cov(a, rowvar=False), np.mean(b, axis=0), np.cov(b, rowvar=False))
    check.expect_close("Frechet distance (64-d, full rank) vs clean-fid frechet_distance", ours["distance"],
                       torch.tensor([float(reference)], dtype=torch.float64), FEATURE_TOLERANCE)


def npz_section(check, work):
    """numpy's .npz variants read by us (np.savez, np.savez_compressed, float32 / float64, .npy format
    1.0, 2.0 and 3.0), ours read by numpy; bad files refused with the file and array named."""
    import io
    import zipfile
    import numpy as np
    import torch
    from numpy.lib import format as npy_format
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(5)
    mu = rng.standard_normal(7)
    sigma = rng.standard_normal((7, 7))
    sigma = sigma @ sigma.T
    probe = check.tool("ilf_metric_probe")
    variants = {"savez": lambda p, m, s: np.savez(p, mu=m, sigma=s),
                "savez_compressed": lambda p, m, s: np.savez_compressed(p, mu=m, sigma=s)}
    for version in ((1, 0), (2, 0), (3, 0)):
        def write_version(path, m, s, version=version):
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for name, array in (("mu", m), ("sigma", s)):
                    buffer = io.BytesIO()
                    npy_format.write_array(buffer, np.ascontiguousarray(array), version=version)
                    z.writestr(name + ".npy", buffer.getvalue())
        variants[f"npy_v{version[0]}"] = write_version
    worst = 0.0
    names = []
    for variant, writer in variants.items():
        for dtype in (np.float64, np.float32):
            path = os.path.join(work, f"{variant}_{np.dtype(dtype).name}.npz")
            writer(path, mu.astype(dtype), sigma.astype(dtype))
            out = os.path.join(work, "npz_read.safetensors")
            common.run([probe, "npz-read", "--in", path, "--out", out], f"npz-read {variant}")
            ours = load_file(out)
            ok = (torch.equal(ours["mu"], torch.from_numpy(mu.astype(dtype).astype(np.float64)))
                  and torch.equal(ours["sigma"], torch.from_numpy(sigma.astype(dtype).astype(np.float64))))
            names.append(f"{variant}/{np.dtype(dtype).name}")
            if not ok:
                worst = float("inf")
    check.expect("numpy .npz files read exactly (" + ", ".join(names) + ")", worst == 0.0)
    # ours -> numpy
    source, path = os.path.join(work, "npz_write.safetensors"), os.path.join(work, "ours.npz")
    save_file({"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}, source)
    common.run([probe, "npz-write", "--in", source, "--out", path], "npz-write")
    loaded = np.load(path)
    check.expect("our .npz loads in numpy, values exact", np.array_equal(loaded["mu"], mu)
                 and np.array_equal(loaded["sigma"], sigma) and loaded["sigma"].dtype == np.float64)
    # refused: Fortran order, other dtypes, wrong shapes, a missing array, big-endian
    bad = {"fortran": dict(mu=mu, sigma=np.asfortranarray(sigma)), "int64": dict(mu=mu.astype(np.int64), sigma=sigma),
           "shape": dict(mu=mu, sigma=sigma[:6]), "missing": dict(mu=mu),
           "bigendian": dict(mu=mu.astype(">f8"), sigma=sigma)}
    expected_words = {"fortran": "sigma", "int64": "mu", "shape": "sigma", "missing": "sigma", "bigendian": "mu"}
    for name, arrays in bad.items():
        path = os.path.join(work, f"bad_{name}.npz")
        np.savez(path, **arrays)
        result = subprocess.run([probe, "npz-read", "--in", path, "--out", os.path.join(work, "bad.safetensors")],
                                capture_output=True, text=True)
        message = result.stdout + result.stderr
        check.expect(f"bad .npz ({name}) refused naming the file and array", result.returncode != 0 and path in message
                     and expected_words[name] in message, message.strip().splitlines()[-1] if message.strip() else "")


def main():
    check = common.Check(__doc__, ["torch", "numpy", "PIL", "safetensors", "cleanfid", "scipy"])
    work = os.path.join(check.build, "test_scratch", "metrics", "clean_fid")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for section in (pil_section, clean_fid_resize_section, features_section, frechet_section, npz_section):
        start = time.time()
        section(check, work)
        print(f"     {section.__name__}: {time.time() - start:.1f} s")
    check.finish()


if __name__ == "__main__":
    main()
