#!/usr/bin/env python3
"""Trains the small KL-regularised convolutional autoencoder ("VAE", as in Stable Diffusion) of the
Fashion-MNIST text-to-image model folder and exports it as TorchScript:

  vae_encoder.pt   forward(images (B, 1, 32, 32) in [-1, 1]) -> latent mean (B, 4, 8, 8), unscaled
                   (also moments(images) -> (mean, logvar), the posterior used in training)
  vae_decoder.pt   forward(latents (B, 4, 8, 8), unscaled) -> images (B, 1, 32, 32) (not clamped: the
                   C++ side clamps to [-1, 1])
  vae_report.json  what was measured: the latent scale factor (1 / std of the encoder's latent means over
                   the 60000 training images, as Stable Diffusion's 0.18215 was measured), reconstruction
                   PSNR on the 10000 test images (32x32 and the centre 28x28), and the accuracy of the
                   Fashion-MNIST classifier (models/fashion_mnist/classifier.pt) on originals and decodings

Images: the 28x28 Fashion-MNIST items scaled 0 -> -1, 255 -> 1 and padded by 2 pixels of background (-1)
on every side to 32x32, as the project's DiT data. Latents: 4 channels at 8x8 (downsampling factor 4).
Loss per image: sum of squared errors over the pixels + KL_WEIGHT x KL(posterior || N(0, 1)) summed over
the latent elements (the decoder sees a posterior sample in training), as in Stable Diffusion's
autoencoder (whose KL weight is 1e-6 of a per-image sum as well). AdamW, one-cycle learning rate (peak
1e-3), gradients clipped to norm 1 (of the loss divided by the pixel count; only in the first steps does
clipping act).

Runs on one CPU thread (deterministic: fixed seeds, single-threaded CPU kernels). Usage:
  OMP_NUM_THREADS=1 /usr/bin/python3 scripts/fashion_t2i/train_vae.py [--out models/fashion_mnist_t2i]
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
CLASSIFIER = "models/fashion_mnist/classifier.pt"
LATENT_CHANNELS = 4
KL_WEIGHT = 1e-5


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split):
    """images (N, 1, 32, 32) in [-1, 1] (2 pixels of -1 around the 28x28 item), labels (N,)."""
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz")).astype(np.float32) / 127.5 - 1.0
    y = read_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus the input (the ResnetBlock of Stable Diffusion's VAE)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    """(B, 1, 32, 32) -> space-to-depth (B, 4, 16, 16) -> conv, ResBlock at 16x16 (c1 channels) -> stride-2
    conv to 8x8 (c2) -> ResBlock -> GroupNorm, SiLU, conv to the posterior's mean and log-variance."""

    def __init__(self, c1: int = 32, c2: int = 64):
        super().__init__()
        self.conv_in = nn.Conv2d(4, c1, 3, padding=1)
        self.block1 = ResBlock(c1)
        self.down = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.block2 = ResBlock(c2)
        self.norm_out = nn.GroupNorm(8, c2)
        self.conv_out = nn.Conv2d(c2, 2 * LATENT_CHANNELS, 3, padding=1)

    @torch.jit.export
    def moments(self, images: torch.Tensor):
        h = self.conv_in(F.pixel_unshuffle(images, 2))
        h = self.block2(self.down(self.block1(h)))
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.moments(images)[0]


class Decoder(nn.Module):
    """(B, 4, 8, 8) -> conv, ResBlock at 8x8 (c2) -> nearest 2x upsampling, conv to c1 -> ResBlock at 16x16
    -> GroupNorm, SiLU, conv to 4 channels -> depth-to-space (B, 1, 32, 32)."""

    def __init__(self, c1: int = 32, c2: int = 64):
        super().__init__()
        self.conv_in = nn.Conv2d(LATENT_CHANNELS, c2, 3, padding=1)
        self.block1 = ResBlock(c2)
        self.up = nn.Conv2d(c2, c1, 3, padding=1)
        self.block2 = ResBlock(c1)
        self.norm_out = nn.GroupNorm(8, c1)
        self.conv_out = nn.Conv2d(c1, 4, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.block1(self.conv_in(latents))
        h = self.block2(self.up(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), 2)


def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over the latent elements of each image: (B,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum((1, 2, 3))


def psnr(images, references):
    """Per-image PSNR (dB) on the [0, 1] scale of images in [-1, 1]: (N,)."""
    mse = ((images - references) / 2).pow(2).flatten(1).mean(1).double()
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def batched(fn, x, batch=1000):
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/fashion_mnist_t2i")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (of the per-pixel loss)")
    parser.add_argument("--kl-weight", type=float, default=KL_WEIGHT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke tests)")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript writes some module constants in set order, which depends on Python's string hashing:
        # fix it, so that the saved files are byte-identical from run to run.
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    x_train, _ = load("train")
    x_test, y_test = load("test")
    train_set = x_train[:args.limit] if args.limit else x_train

    encoder, decoder = Encoder(), Decoder()
    params = list(encoder.parameters()) + list(decoder.parameters())
    print(f"encoder {sum(p.numel() for p in encoder.parameters())} parameters, "
          f"decoder {sum(p.numel() for p in decoder.parameters())}", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps_per_epoch = len(train_set) // args.batch_size
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.05)
    generator = torch.Generator().manual_seed(args.seed)
    start, step = time.time(), 0
    for epoch in range(args.epochs):
        encoder.train()
        decoder.train()
        perm = torch.randperm(len(train_set), generator=generator)
        sums, count = torch.zeros(5, dtype=torch.float64), 0
        for i in range(steps_per_epoch):
            x = train_set[perm[i * args.batch_size:(i + 1) * args.batch_size]]
            mean, logvar = encoder.moments(x)
            z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator)
            rec = (decoder(z) - x).pow(2).sum((1, 2, 3)).mean()
            kl = kl_divergence(mean, logvar).mean()
            # Divided by the pixel count (a constant: the same optimum) so that gradient norms are O(1) for clipping.
            loss = (rec + args.kl_weight * kl) / x[0].numel()
            opt.zero_grad()
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(params, args.clip).item()
            opt.step()
            sched.step()
            step += 1
            sums += torch.tensor([rec.item() / x[0].numel(), kl.item(), (0.5 * logvar).exp().mean().item(), grad_norm,
                                  float(grad_norm > args.clip)])
            count += 1
            if step % 200 == 0 or i == steps_per_epoch - 1:
                avg = sums / count  # means over the steps since the last line
                sums.zero_()
                count = 0
                print(f"epoch {epoch + 1} step {step}/{total}: mse {avg[0]:.5f} (psnr~{10 * math.log10(4 / avg[0]):.2f}) "
                      f"kl {avg[1]:.1f} posterior std {avg[2]:.4f} latent std {mean.std().item():.3f} "
                      f"grad norm {avg[3]:.3f} clipped {avg[4]:.2f} lr {sched.get_last_lr()[0]:.2e} "
                      f"[{time.time() - start:.0f} s]", flush=True)
    train_seconds = time.time() - start
    encoder.eval()
    decoder.eval()

    # Export, then measure everything with the exported modules (what the C++ side loads).
    enc_path, dec_path = os.path.join(args.out, "vae_encoder.pt"), os.path.join(args.out, "vae_decoder.pt")
    torch.jit.script(encoder).save(enc_path + ".tmp")
    torch.jit.script(decoder).save(dec_path + ".tmp")
    os.replace(enc_path + ".tmp", enc_path)
    os.replace(dec_path + ".tmp", dec_path)
    enc, dec = torch.jit.load(enc_path), torch.jit.load(dec_path)
    with torch.no_grad():
        probe = x_test[:8]
        assert torch.equal(enc(probe), encoder(probe)) and torch.equal(dec(enc(probe)), decoder(encoder(probe)))
        assert torch.allclose(enc(probe[:1]), enc(probe)[:1], atol=1e-5)  # no batch coupling
        assert enc(probe).shape == (8, LATENT_CHANNELS, 8, 8) and dec(enc(probe)).shape == (8, 1, 32, 32)

    latents = batched(enc, x_train).double()  # (60000, 4, 8, 8)
    latent_std = latents.std().item()
    scale = float(f"{1.0 / latent_std:.5g}")
    channel_mean = latents.mean((0, 2, 3)).tolist()
    channel_std = latents.std((0, 2, 3)).tolist()

    test_latents = batched(enc, x_test)
    recon = batched(dec, test_latents).clamp(-1, 1)
    p32, p28 = psnr(recon, x_test), psnr(recon[..., 2:30, 2:30], x_test[..., 2:30, 2:30])
    mse32 = ((recon - x_test) / 2).pow(2).mean().item()
    mse28 = ((recon - x_test)[..., 2:30, 2:30] / 2).pow(2).mean().item()
    # Decoding scaled latents with a little noise added (sigma = 0.1 in the diffusion's unit-variance units):
    # how smooth the decoder is around the data.
    noisy = batched(dec, test_latents + 0.1 / scale * torch.randn(test_latents.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    p_noisy = psnr(noisy, x_test)
    with torch.no_grad():
        _, logvar = enc.moments(x_test[:1000])
    posterior_std = (0.5 * logvar).exp().mean().item()

    classifier = torch.jit.load(CLASSIFIER)
    classify = lambda x: batched(lambda b: classifier(b[..., 2:30, 2:30]).argmax(1), x)  # noqa: E731
    acc_orig = (classify(x_test) == y_test).double().mean().item()
    acc_recon = (classify(recon) == y_test).double().mean().item()
    acc_noisy = (classify(noisy) == y_test).double().mean().item()

    report = {
        "latent_scale": scale,
        "latent_std": latent_std,
        "latent_channel_mean": channel_mean,
        "latent_channel_std": channel_std,
        "posterior_std_mean_test": posterior_std,
        "test_psnr_32x32": p32.mean().item(),
        "test_psnr_28x28": p28.mean().item(),
        "test_psnr_32x32_of_mean_mse": 10 * math.log10(1 / mse32),
        "test_psnr_28x28_of_mean_mse": 10 * math.log10(1 / mse28),
        "test_psnr_32x32_noisy_latents_sigma_0.1": p_noisy.mean().item(),
        "classifier_accuracy_originals": acc_orig,
        "classifier_accuracy_reconstructions": acc_recon,
        "classifier_accuracy_noisy_latents_sigma_0.1": acc_noisy,
        "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
        "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "clip": args.clip,
        "kl_weight": args.kl_weight,
        "seed": args.seed, "train_images": len(train_set),
        "train_seconds": round(train_seconds), "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    with open(os.path.join(args.out, "vae_report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    for k, v in report.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
