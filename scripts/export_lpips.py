"""Converts the lpips package's LPIPS model (AlexNet or VGG16 backbone + its linear heads, version 0.1)
into the one safetensors file src/eval/lpips.cpp reads.

LPIPS is reported as fidelity to a reference setting's same-seed images; the C++ side reimplements the
network natively (no TorchScript), so it needs the weights under names it knows. This script builds
lpips.LPIPS(net=...) exactly as a user of the package would (its shipped linear heads; the torchvision
ImageNet backbone, which torchvision downloads on first use, or a random one with --random-backbone for
tests) and writes its state dict, names unchanged (scaling_layer.shift / scale, net.sliceK.I.weight /
bias, linK.model.1.weight; the duplicate lins.K entries dropped), as float32, with metadata
format=ilf-lpips, net, version and the lpips version.

  python scripts/export_lpips.py --net alex --out lpips_alex.safetensors
  python scripts/export_lpips.py --net vgg --out lpips_vgg.safetensors --random-backbone --seed 0   (tests)
"""
import argparse
import sys


def export(net, out, random_backbone=False, seed=0):
    import torch
    import lpips
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=random_backbone, verbose=False).eval()
    tensors = {}
    for name, value in model.state_dict().items():
        if name.startswith("lins."):  # the same tensors as linK.* (lpips keeps both names)
            continue
        tensors[name] = value.detach().to(torch.float32).contiguous().clone()
    metadata = {"format": "ilf-lpips", "net": "vgg" if net in ("vgg", "vgg16") else net, "version": "0.1",
                "lpips_version": getattr(lpips, "__version__", "unknown"),
                "backbone": "random" if random_backbone else "torchvision-imagenet"}
    save_file(tensors, out, metadata=metadata)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=["alex", "vgg"], default="alex")
    parser.add_argument("--out", required=True, help="the safetensors file to write")
    parser.add_argument("--random-backbone", action="store_true",
                        help="lpips' pnet_rand=True: a randomly initialised backbone (tests; no download)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for --random-backbone")
    args = parser.parse_args()
    try:
        import lpips  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError as e:
        sys.exit(f"export_lpips.py needs the lpips and safetensors packages ({e})")
    export(args.net, args.out, args.random_backbone, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
