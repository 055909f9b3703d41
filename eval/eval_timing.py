"""Where `mmtok eval` spends its time on an image run, beside what training the run cost on the same machine.

    python eval/eval_timing.py runs/quickstart --out eval/results/eval_timing/quickstart.json

Runs the real evaluation pass (mmtok.evaluation.evaluate, the default metrics: rFID with the FID Inception, PSNR,
SSIM, LPIPS VGG and AlexNet, the EfficientNet-Lite2 classifier at its own 260 px) on the run's validation data and
reads its metrics.json["timing"] (seconds per part of the pass, each metric apart). LPIPS needs torchvision's VGG16 /
AlexNet ImageNet weights, which are not on every machine: without them (`--lpips random`, the default when they are
missing) the LPIPS networks get a random backbone of the same architecture, so their *time* is real and their
*values* are not reported. Prints a markdown table; writes the JSON (timing, training seconds from the run's
summary.json, the machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an image run directory (e.g. runs/quickstart)")
    parser.add_argument("--data", default=None, help="evaluation data (default: the run's data.val)")
    parser.add_argument("--lpips", choices=("auto", "random"), default="auto",
                        help="auto: the real LPIPS networks when their weights are here, else random backbones")
    parser.add_argument("--out", default="eval/results/eval_timing/quickstart.json")
    args = parser.parse_args()

    import torch

    from mmtok import metrics
    from mmtok.config import load_stored
    from mmtok.evaluation import evaluate
    from mmtok.teachers import lpips as lpips_mod

    missing = [net for net in ("vgg", "alex") if not metrics.lpips_available(net)[0]]
    random_lpips = args.lpips == "random" or bool(missing)
    if random_lpips:  # the same architecture on a random backbone: timing only
        lpips_mod.load_lpips = lambda net="vgg", weights_path=None: lpips_mod.untrained_lpips(net)
        import mmtok.metrics.image as image_metrics
        import mmtok.teachers.lpips as teachers_lpips

        image_metrics.load_lpips = lpips_mod.load_lpips
        teachers_lpips.lpips_available = lambda net: (True, "")
        metrics.lpips_available = teachers_lpips.lpips_available

    recipe = load_stored(str(Path(args.run) / "recipe.yaml"))
    data = args.data or recipe.data.val or recipe.data.train
    summary = json.loads((Path(args.run) / "summary.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(args.run, data, out=Path(tmp) / "eval", num_workers=1, progress=False)
    timing = result["timing"]
    table = {k: v for k, v in timing["seconds"].items()}
    record = {
        "run": args.run, "data": data, "images": timing["samples"], "resolution": result["protocol"]["resolution"],
        "lpips_backbone": "random (timing only)" if random_lpips else "torchvision ImageNet",
        "eval_pass_s": timing["total_s"], "seconds": table,
        "training_s": summary.get("seconds_total", summary.get("seconds")), "training_steps": summary.get("step"),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "device": result["protocol"]["device"]},
        "unavailable": result["unavailable"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    rows = sorted(((k, v) for k, v in table.items() if k != "metrics"), key=lambda kv: -kv[1])
    print(f"| part of the pass ({timing['samples']} images, {record['resolution']} px) | seconds |")
    print("|---|---|")
    for key, value in rows:
        print(f"| {key} | {value:.1f} |")
    print(f"| **evaluation pass** | **{timing['total_s']:.1f}** |")
    print(f"| training ({record['training_steps']} steps, summary.json) | {record['training_s']:.1f} |")


if __name__ == "__main__":
    main()
