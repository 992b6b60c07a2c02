"""Backbones: diffusers' own forward against ilf_forward on the exported weights.

A tiny random diffusers PixArtTransformer2DModel (PixArt-alpha 512-like, PixArt-alpha 1024-like with the
resolution / aspect-ratio micro-conditions, PixArt-Sigma-like) or DiTTransformer2DModel is saved with
save_pretrained, and its weights reach the C++ backbone four ways: the diffusers folder read directly,
scripts/export_weights.py to safetensors and to a TorchScript archive, and (PixArt)
scripts/export_pixart_model_folder.py's backbone.safetensors with the backbone settings it writes into
model.json. Each must give diffusers' output and every block's hidden state within 1e-5 (max relative
error), on square and, where the model takes them, non-square latents.
"""
import json
import os

from common import (PIXART_CASES, TINY_T5_WIDTH, Check, python_script, randomize, relative_error, run,
                    tiny_model_folder)

TOLERANCE = 1e-5


def pixart_inputs(case, height, width, generator):
    import torch
    batch, tokens = 2, 6
    inputs = {
        "x": torch.randn(batch, 4, height, width, generator=generator),
        "timestep": torch.tensor([999.0, 421.0]),
        "y": torch.randn(batch, tokens, TINY_T5_WIDTH, generator=generator),  # caption features
        "mask": torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.int64),
    }
    if PIXART_CASES[case]["use_additional_conditions"]:
        hw = torch.tensor([[8.0 * height, 8.0 * width], [512.0, 768.0]])
        inputs["data_info.img_hw"] = hw
        inputs["data_info.aspect_ratio"] = (hw[:, :1] / hw[:, 1:]).contiguous()
    return inputs


def pixart_reference(model, inputs):
    """diffusers' output and the hidden states after the patch embedding and after each block."""
    added = {"resolution": inputs.get("data_info.img_hw"), "aspect_ratio": inputs.get("data_info.aspect_ratio")}
    return forward_with_hidden(model, lambda: model(inputs["x"], encoder_hidden_states=inputs["y"],
                                                    timestep=inputs["timestep"], encoder_attention_mask=inputs["mask"],
                                                    added_cond_kwargs=added).sample)


def forward_with_hidden(model, call):
    import torch
    hidden = []
    hooks = [model.pos_embed.register_forward_hook(lambda m, i, o: hidden.append(o))]
    hooks += [b.register_forward_hook(lambda m, i, o: hidden.append(o)) for b in model.transformer_blocks]
    with torch.no_grad():
        out = call()
    for h in hooks:
        h.remove()
    return {"out": out, **{f"hidden.{k}": h for k, h in enumerate(hidden)}}


def compare(check, what, reference, output_file):
    """Our out and hidden.k against diffusers' (the tolerance applies to every one of them)."""
    from safetensors.torch import load_file
    ours = load_file(output_file)
    errors = {name: relative_error(ours[name], ref) if name in ours else float("inf") for name, ref in reference.items()}
    worst = max(errors, key=errors.get)
    check.expect(what, errors[worst] <= TOLERANCE, f"out {errors['out']:.2e}; largest over out and hidden.0.."
                 f"{len(reference) - 2}: {errors[worst]:.2e} ({worst}); tolerance {TOLERANCE:.0e}")
    return errors[worst]


def ilf_forward(check, weights, inputs_file, out_file, settings):
    command = [check.tool("ilf_forward"), "--weights", weights, "--inputs", inputs_file, "--out", out_file]
    for key, value in settings.items():
        command += ["--set", f"model.{key}={json.dumps(value)}"]
    run(command, "ilf_forward")


def check_pixart(check, case, work):
    import torch
    from diffusers import PixArtTransformer2DModel
    from safetensors.torch import save_file
    c = PIXART_CASES[case]
    pipeline_folder, folder, manifest = tiny_model_folder(work, case, keep=["backbone"])
    transformer_folder = os.path.join(pipeline_folder, "transformer")
    model = PixArtTransformer2DModel.from_pretrained(transformer_folder).eval()

    # The exporters.
    run(python_script("export_weights.py") + [pipeline_folder, "--safetensors", os.path.join(work, "w.safetensors"),
                                              "--torchscript", os.path.join(work, "w.pt")], "export_weights.py")
    with open(os.path.join(work, "model_folder_run.json"), "w") as f:
        json.dump({"model": manifest["model"]}, f)

    variant = "sigma" if c["family"] == "pixart_sigma" else ("alpha_ms" if c["use_additional_conditions"] else "alpha")
    check.expect("model.json variant", manifest["model"]["variant"] == variant, manifest["model"]["variant"])
    scale_key = "pe_interpolation" if variant == "sigma" else "lewei_scale"
    settings = {"num_heads": 2, "variant": variant, "input_size": 8, scale_key: float(c["interpolation_scale"])}
    routes = {
        "diffusers folder": (transformer_folder, settings),
        "export_weights.py safetensors": (os.path.join(work, "w.safetensors"), settings),
        "export_weights.py TorchScript": (os.path.join(work, "w.pt"), settings),
        "export_pixart_model_folder.py + model.json": (os.path.join(folder, "backbone.safetensors"), None),
    }
    # PixArt-alpha 512 takes square latents of its size; the others any size (the pos embedding is recomputed).
    shapes = [(8, 8)] if variant == "alpha" else [(8, 8), (8, 12)]
    generator = torch.Generator().manual_seed(4)
    for height, width in shapes:
        inputs = pixart_inputs(case, height, width, generator)
        inputs_file = os.path.join(work, f"inputs_{height}x{width}.safetensors")
        save_file(inputs, inputs_file)
        reference = pixart_reference(model, inputs)
        for route, (weights, route_settings) in routes.items():
            out_file = os.path.join(work, f"out_{height}x{width}_{len(route)}.safetensors")
            if route_settings is None:
                command = [check.tool("ilf_forward"), "--weights", weights, "--inputs", inputs_file, "--out", out_file,
                           "--config", os.path.join(work, "model_folder_run.json")]
                run(command, "ilf_forward")
            else:
                ilf_forward(check, weights, inputs_file, out_file, route_settings)
            compare(check, f"{case} {height}x{width} latents, {route}", reference, out_file)


def check_dit(check, work):
    import torch
    from diffusers import DiTTransformer2DModel
    from safetensors.torch import save_file
    model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                                  sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    randomize(model, 1).eval()
    # Every diffusers DiT block carries its own copy of the timestep and class embedders; a converted official
    # checkpoint holds the same tensors in each (the official DiT has one), which the C++ conversion requires.
    with torch.no_grad():
        shared = model.transformer_blocks[0].norm1.emb
        for block in model.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(shared.state_dict())
    transformer_folder = os.path.join(work, "transformer")
    model.save_pretrained(transformer_folder)
    run(python_script("export_weights.py") + [transformer_folder, "--safetensors", os.path.join(work, "w.safetensors"),
                                              "--torchscript", os.path.join(work, "w.pt")], "export_weights.py")

    generator = torch.Generator().manual_seed(4)
    inputs = {"x": torch.randn(3, 4, 8, 8, generator=generator), "t": torch.tensor([999, 421, 0]),
              "y": torch.tensor([3, 10, 0])}  # 10 = the null class
    inputs_file = os.path.join(work, "inputs.safetensors")
    save_file(inputs, inputs_file)
    reference = forward_with_hidden(model, lambda: model(inputs["x"], timestep=inputs["t"], class_labels=inputs["y"]).sample)
    settings = {"num_heads": 2, "input_size": 8}
    for route, weights in {"diffusers folder": transformer_folder,
                           "export_weights.py safetensors": os.path.join(work, "w.safetensors"),
                           "export_weights.py TorchScript": os.path.join(work, "w.pt")}.items():
        out_file = os.path.join(work, f"out_{len(route)}.safetensors")
        ilf_forward(check, weights, inputs_file, out_file, settings)
        compare(check, f"dit, {route}", reference, out_file)


def main():
    check = Check(__doc__.splitlines()[0], ["torch", "diffusers", "transformers", "safetensors", "sentencepiece",
                                            "google.protobuf"],
                  lambda p: p.add_argument("--case", required=True, choices=sorted(PIXART_CASES) + ["dit"]))
    case = check.args.case
    work = check.work_dir(f"backbone_{case}")
    if case == "dit":
        check_dit(check, work)
    else:
        check_pixart(check, case, work)
    check.finish()


if __name__ == "__main__":
    main()
