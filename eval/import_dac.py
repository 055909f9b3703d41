"""DAC's own weights file in, checked against DAC's own code: DAC's code trains its small 16 kHz configuration
briefly on speech and saves it as DAC saves its released weights; `mmtok import dac` turns the file into a bundle;
the bundle's ids and decoded audio are compared with DAC's own encode / decode on held-out speech.

    apt-get install tuxpaint-stamps-default          # the demo speech
    pip install --no-deps descript-audio-codec descript-audiotools torchaudio argbind julius einops flatten-dict \
        randomname ffmpy importlib-resources markdown2 tensorboard protobuf absl-py docstring-parser matplotlib
    python eval/import_dac.py [--minutes 1.5]

Install DAC in a separate environment layered on mmtok's (e.g. `python -m venv --system-site-packages`): the
descript-audio-codec wheel ships a top-level `tests` package that shadows this repository's tests.

DAC's side (eval/compare_dac.py's `dac_modules` / `train_dac`, DAC's own code): DAC(encoder_dim=64, encoder_rates
[2, 4, 5, 8], decoder_dim=512, 8 codebooks of 256 codes of dim 8, 16 kHz), trained with its mel loss and VQ terms
(no adversary) for --minutes on the demo's training speech, saved with DAC's `save(path, package=False)`
({"state_dict" with weight_g / weight_v, "metadata": {"kwargs"}}, the layout of DAC's released .pth files). The odd
stride 5 exercises DAC's upsampling, one sample short per odd stride (mmtok's `upsampling: dac`).

Compared on --segments 0.5 s segments of the demo's validation speech (never trained on): DAC's `encode` (codes)
and `decode` (audio) against `mmtok.load(bundle)`'s encode / decode; the first len(DAC output) samples are
compared, and mmtok's zero padding after them is checked. Writes eval/results/import_dac.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.5, help="DAC's training budget")
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--weights", help="a DAC .pth this script saved before: skip the training")
    ap.add_argument("--work", default="runs/import_dac")
    ap.add_argument("--out", default=str(HERE / "results" / "import_dac.json"))
    args = ap.parse_args(argv)

    from compare_dac import train_dac
    from dac.model import DAC

    import mmtok
    from mmtok import config
    from mmtok.data import make_loader
    from mmtok.export.interop import import_bundle

    spec = config.load("audio_quickstart").model  # 16 kHz mono, 0.5 s segments: the loader's settings
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    weights = Path(args.weights) if args.weights else work / "dac_weights.pth"
    if args.weights:
        dac, info = DAC.load(str(weights)).eval(), {"weights": str(weights)}
    else:
        loader = make_loader("demo", "train", spec, batch_size=16, num_workers=1, seed=0, modality="audio")
        dac, info = train_dac(loader, args.minutes, spec.sample_rate, levels=8, codebook_size=256, adversary=False,
                              lr=1e-4)
        dac.save(str(weights), package=False)
    report = import_bundle("dac", weights, work / "bundle", force=True)
    tok = mmtok.load(work / "bundle").model

    test = make_loader("demo", "val", spec, batch_size=16, num_workers=0, max_samples=args.segments,
                       modality="audio")
    differing = total = 0
    max_diff = scale = pad = 0.0
    with torch.no_grad():
        for batch in test:
            x = batch["audio"]
            z, codes, _, _, _ = dac.encode(x)
            theirs = dac.decode(z)
            ids = tok.encode(x)
            mine = tok.decode(codes.transpose(1, 2))
            n = theirs.shape[-1]
            differing += int((ids != codes.transpose(1, 2)).sum())
            total += ids.numel()
            max_diff = max(max_diff, float((mine[..., :n] - theirs).abs().max()))
            scale = max(scale, float(theirs.abs().max()))
            pad = max(pad, float(mine[..., n:].abs().max()) if mine.shape[-1] > n else 0.0)
    result = {"dac_training": info, "import_config": report["source"].config_from,
              "import_notes": report["source"].notes, "segments": args.segments,
              "ids_differing": differing, "ids_total": total, "max_output_difference": max_diff,
              "output_scale": scale, "mmtok_padding_max_abs": pad,
              "machine": {"python": platform.python_version(), "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("dac_training", "machine")}, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
