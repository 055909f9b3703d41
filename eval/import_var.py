"""`mmtok import var` against VAR's own code: VAR's VQVAE (models/vqvae.py, from a local clone given with --var) with
random weights, saved as its release saves it (a plain state dict), imported by mmtok, and both run on the same
images: the ids of every scale (VAR's img_to_idxBl) must be equal and the images decoded from them (VAR's
idxBl_to_img, clamped) must agree to float precision. Also `--checkpoint vae_ch160v4096z32.pth` to run the released
weights themselves (not on this machine: nothing can be downloaded here).

    python eval/import_var.py --var /path/to/VAR [--ch 32] [--images 4] [--out eval/results/import_var.json]

VAR's VQVAE fixes ch_mult (1, 1, 2, 2, 4) and ten scales, so images are 256 x 256; --ch must be a multiple of 32
(its GroupNorm has 32 groups). Prints one line per check and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", required=True, help="a local clone of FoundationVision/VAR")
    parser.add_argument("--checkpoint", help="VAR's released VQ-VAE .pth (default: random weights)")
    parser.add_argument("--ch", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--z", type=int, default=8)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default="eval/results/import_var.json")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(args.var).resolve()))
    from models.vqvae import VQVAE  # VAR's own code

    import mmtok
    from mmtok.export.interop import import_bundle

    torch.manual_seed(0)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        theirs = VQVAE(vocab_size=4096, z_channels=32, ch=160, test_mode=True)
        theirs.load_state_dict(state, strict=True)
        path = Path(args.checkpoint)
    else:
        theirs = VQVAE(vocab_size=args.vocab, z_channels=args.z, ch=args.ch, test_mode=True)
        with torch.no_grad():  # every tensor random (biases and norms too), codes of the residuals' scale
            for name, p in theirs.named_parameters():
                is_norm_weight = "norm" in name and name.endswith("weight")
                p.copy_(torch.randn_like(p) * (0.2 if "norm" in name else 0.05) + (1.0 if is_norm_weight else 0.0))
        path = Path(tempfile.mkdtemp()) / f"vae_ch{args.ch}v{args.vocab}z{args.z}.pth"
        torch.save(theirs.state_dict(), path)
    theirs.eval()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = import_bundle("var", path, Path(tmp) / "bundle")
        seconds = time.perf_counter() - t0
        ours = mmtok.load(Path(tmp) / "bundle").model.eval()
        x = torch.rand(args.images, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
        with torch.no_grad():
            ids_theirs = torch.cat(theirs.img_to_idxBl(x), dim=1)
            images_theirs = theirs.idxBl_to_img(theirs.img_to_idxBl(x), same_shape=True, last_one=True)
            ids_ours = ours.encode(x)
            images_ours = ours.decode(ids_theirs).clamp(-1, 1)
    same = float((ids_ours == ids_theirs).float().mean())
    diff = float((images_ours - images_theirs).abs().max())
    weights = args.checkpoint or f"random (ch {args.ch}, V {args.vocab}, z {args.z})"
    result = {"var_code": str(args.var), "weights": weights,
              "images": args.images, "ids_equal_fraction": same, "tokens_per_image": int(ids_theirs.shape[1]),
              "max_image_difference": diff, "import_seconds": round(seconds, 2), "model": report["source"].model}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(f"ids equal: {same:.4f} of {ids_theirs.numel()} ({ids_theirs.shape[1]} per image)\n"
                     f"decoded images: max |mmtok - VAR| = {diff:.2e} (images in [-1, 1])\n"
                     f"import: {seconds:.2f} s -> {args.out}\n")


if __name__ == "__main__":
    main()
