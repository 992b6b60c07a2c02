#!/usr/bin/env python3
"""Writes tests/data/tiny_vae_encoder.pt: a TorchScript stand-in for a VAE encoder used by the
ilf_prepare_data test. images (B, 3, H, W) -> 8x average pooling with channels (r, g, b, r):
(B, 4, H/8, W/8). Run with Debian's python3 (python3-torch 1.13): python3 tests/data/make_tiny_vae_encoder.py
"""
import os

import torch


class TinyVaeEncoder(torch.nn.Module):
    def forward(self, x):
        z = torch.nn.functional.avg_pool2d(x, 8)
        return torch.cat([z, z[:, :1]], 1)


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_vae_encoder.pt")
    torch.jit.script(TinyVaeEncoder()).save(out)
    print("wrote", out)
