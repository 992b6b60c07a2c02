"""The VAE: scripts/export_pixart_model_folder.py's TorchScript decoder and encoder, run by our
TorchScriptVae, against diffusers' AutoencoderKL.

A tiny random AutoencoderKL with the SD / SDXL VAE's structure (8x downsampling, 4 latent channels, a
mid-block with attention) in a tiny PixArt pipeline folder (PixArt-alpha: latent scale 0.18215;
PixArt-Sigma: 0.13025) is exported into a model folder. ilf_export_probe decodes latents as the sampler
produces them and encodes images, on a size other than the one traced; the results must equal diffusers'
vae.decode(latents / scale).sample clamped to [-1, 1], and vae.encode(images).latent_dist.mean * scale,
within 1e-5 (max relative error).
"""
import os

from common import PIXART_CASES, Check, run, tiny_model_folder

TOLERANCE = 1e-5


def main():
    check = Check(__doc__.splitlines()[0], ["torch", "diffusers", "transformers", "safetensors", "sentencepiece",
                                            "google.protobuf"])
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file
    for case in ("pixart_alpha_512", "pixart_sigma"):
        work = check.work_dir(f"vae_{case}")
        pipeline_folder, folder, manifest = tiny_model_folder(work, case, keep=["vae"])
        scale = manifest["latent_scale"]
        check.expect(f"{case}: model.json latent_scale", scale == PIXART_CASES[case]["latent_scale"], str(scale))

        vae = AutoencoderKL.from_pretrained(pipeline_folder, subfolder="vae").eval()
        generator = torch.Generator().manual_seed(5)
        latents = torch.randn(2, 4, 12, 20, generator=generator) * scale  # as sampled: scaled latents, 96 x 160 px
        images = torch.rand(2, 3, 64, 96, generator=generator) * 2 - 1
        with torch.no_grad():
            decoded = vae.decode(latents / scale).sample.clamp(-1, 1)
            encoded = vae.encode(images).latent_dist.mean * scale
        inputs = os.path.join(work, "inputs.safetensors")
        save_file({"latents": latents, "images": images}, inputs)
        out = os.path.join(work, "ours.safetensors")
        run([check.tool("ilf_export_probe"), "vae", "--decoder", os.path.join(folder, manifest["vae_decoder"]),
             "--encoder", os.path.join(folder, manifest["vae_encoder"]), "--scale", scale, "--inputs", inputs, "--out", out],
            "ilf_export_probe vae")
        ours = load_file(out)
        inside = (decoded.abs() < 1).double().mean().item()  # pixels the clamp leaves alone carry the comparison
        check.expect(f"{case}: decoded pixels inside (-1, 1)", inside > 0.5, f"{inside:.0%}")
        check.expect_close(f"{case}: decode equals AutoencoderKL.decode", ours["decoded"], decoded, TOLERANCE)
        check.expect_close(f"{case}: encode equals AutoencoderKL.encode mean", ours["encoded"], encoded, TOLERANCE)
    check.finish()


if __name__ == "__main__":
    main()
