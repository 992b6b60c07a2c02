"""The T5 text encoder: scripts/export_pixart_model_folder.py's TorchScript export, run by our TextEncoder,
against transformers' T5EncoderModel.

A tiny random T5 v1.1-style encoder in a tiny PixArt pipeline folder (PixArt-alpha: 120 tokens; PixArt-Sigma:
300) is exported into a model folder; ilf_export_probe encodes prompts with the folder's text_encoder.pt and
spiece.model through ilf::TextEncoder (tokenizer included). The features must equal transformers'
T5EncoderModel(input_ids, attention_mask) on transformers' T5Tokenizer's ids within 1e-5 (max relative
error, over every position, padding included), and the mask must equal the tokenizer's attention mask.
The exporter's tokenizer_check.json must also hold the ids our tokenizer gives.
"""
import json
import os

from common import Check, run, tiny_model_folder

TOLERANCE = 1e-5
PROMPTS = ["a corgi wearing a red scarf", "", "An Astronaut riding a horse on the Moon, oil painting (1984)!",
           "Tokyo 東京 at night, neon 😀 lights", "a photo of a cat " * 40]  # the last one longer than 120 tokens


def main():
    check = Check(__doc__.splitlines()[0], ["torch", "diffusers", "transformers", "safetensors", "sentencepiece",
                                            "google.protobuf"])
    import torch
    from safetensors.torch import load_file
    from transformers import T5EncoderModel, T5Tokenizer
    for case in ("pixart_alpha_512", "pixart_sigma"):
        work = check.work_dir(f"text_encoder_{case}")
        pipeline_folder, folder, manifest = tiny_model_folder(work, case, keep=["text_encoder"])
        max_length = manifest["max_caption_length"]

        tokenizer = T5Tokenizer.from_pretrained(pipeline_folder, subfolder="tokenizer")
        encoder = T5EncoderModel.from_pretrained(pipeline_folder, subfolder="text_encoder").eval()
        tokens = tokenizer(PROMPTS, padding="max_length", max_length=max_length, truncation=True,
                           add_special_tokens=True, return_tensors="pt")
        with torch.no_grad():
            reference = encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state

        prompts_file = os.path.join(work, "prompts.json")
        with open(prompts_file, "w") as f:
            json.dump(PROMPTS, f)
        out = os.path.join(work, "ours.safetensors")
        run([check.tool("ilf_export_probe"), "encode-text", "--encoder", os.path.join(folder, manifest["text_encoder"]),
             "--spiece", os.path.join(folder, manifest["tokenizer"]), "--max-length", max_length,
             "--prompts", prompts_file, "--out", out], "ilf_export_probe encode-text")
        ours = load_file(out)
        check.expect(f"{case}: mask equals transformers' attention_mask ({max_length} tokens)",
                     torch.equal(ours["mask"], tokens.attention_mask))
        check.expect_close(f"{case}: features equal T5EncoderModel's last_hidden_state", ours["features"], reference,
                           TOLERANCE)
        valid = tokens.attention_mask.bool()
        check.expect_close(f"{case}: features at the unmasked tokens", ours["features"][valid], reference[valid], TOLERANCE)

        out = os.path.join(work, "check_ids.safetensors")
        with open(os.path.join(folder, manifest["tokenizer_check"])) as f:
            recorded = json.load(f)
        with open(os.path.join(work, "check_prompts.json"), "w") as f:
            json.dump(recorded["prompts"], f)
        run([check.tool("ilf_export_probe"), "tokenize", "--spiece", os.path.join(folder, manifest["tokenizer"]),
             "--max-length", recorded["max_length"], "--prompts", os.path.join(work, "check_prompts.json"), "--out", out],
            "ilf_export_probe tokenize")
        ids = load_file(out)
        ours_ids = [row[:int(m.sum())] for row, m in zip(ids["input_ids"].tolist(), ids["attention_mask"])]
        check.expect(f"{case}: tokenizer_check.json holds our tokenizer's ids", ours_ids == recorded["input_ids"])
    check.finish()


if __name__ == "__main__":
    main()
