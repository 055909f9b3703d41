"""Per-scale codebook usage of the `var` family: variants of `mmtok train var_quickstart` trained on most of the
training photographs of eval/photos.py and scored with `mmtok eval` on the rest (development), or a chosen variant
scored once on the held-out photographs.

    python eval/photos.py photos
    python eval/var_usage_study.py --photos photos --work /tmp/var_study [--only NAME ...] [--seed 1]
    python eval/var_usage_study.py --photos photos --work /tmp/var_study --only NAME --report   # once, held out

Split: a training photograph goes to development when the first byte of its file name's SHA-256 is 0 mod 5 (45 of
229), the others (184) train. Every run trains 900 steps of 8 (the recipe's own budget, unless the variant says
otherwise; its 5-minute cap is lifted to 10 so a slow step never cuts a run short), without validation, then
`mmtok eval RUN --data DEV --no-rfid --classifier none`. A run already finished under --work (the same variant
and seed) is scored again, not retrained: `--report` after a dev run scores the same model.
Rows (PSNR, SSIM and per scale: codes used, of possible, of a uniform draw, perplexity) are merged into
eval/results/var/usage_study.json under "dev" or "report" (a variant run again replaces its row); the table is
printed. One run at a time: the numbers come from whatever machine runs it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "var" / "usage_study.json"
VARIANTS = {  # name -> recipe overrides on top of var_quickstart (each sets the entropy weight, whatever ships)
    "no entropy": ["loss.weights.entropy=0"],
    "entropy 0.01": ["loss.weights.entropy=0.01"],
    "entropy 0.03": ["loss.weights.entropy=0.03"],
    "entropy 0.1": ["loss.weights.entropy=0.1"],
    "entropy 0.1, T 0.1": ["loss.weights.entropy=0.1", "model.quantizer.entropy_temperature=0.1"],
    "entropy 0.01, 1800 steps": ["loss.weights.entropy=0.01", "trainer.max_steps=1800", "trainer.max_minutes=20"],
    "no entropy, 1800 steps": ["loss.weights.entropy=0", "trainer.max_steps=1800", "trainer.max_minutes=20"],
    "entropy 0.01, diversity 2": ["loss.weights.entropy=0.01", "model.quantizer.entropy_diversity=2"],
    "entropy 0.01, diversity 2, 1800 steps": ["loss.weights.entropy=0.01", "model.quantizer.entropy_diversity=2",
                                              "trainer.max_steps=1800", "trainer.max_minutes=20"],
    "no entropy, 3600 steps": ["loss.weights.entropy=0", "trainer.max_steps=3600", "trainer.max_minutes=40"],
    "entropy 0.01, diversity 2, 3600 steps": ["loss.weights.entropy=0.01", "model.quantizer.entropy_diversity=2",
                                              "trainer.max_steps=3600", "trainer.max_minutes=40"],
}


def split(photos: Path, work: Path) -> tuple[Path, Path]:
    """work/train and work/dev: links to photos/train's files, by the SHA-256 of each file name."""
    train, dev = work / "train", work / "dev"
    for d in (train, dev):
        d.mkdir(parents=True, exist_ok=True)
    for f in sorted((photos / "train").iterdir()):
        to = dev if hashlib.sha256(f.name.encode()).digest()[0] % 5 == 0 else train
        if not (to / f.name).exists():
            (to / f.name).symlink_to(f.resolve())
    return train, dev


def run(name: str, sets: list[str], seed: int, train: Path, score: Path, work: Path) -> dict:
    mmtok = str(Path(sys.executable).with_name("mmtok"))
    out = work / f"{name.replace(' ', '_').replace(',', '')}_seed{seed}"
    args = [mmtok, "train", "var_quickstart", "--data", str(train), "--out", str(out), "--set", "data.val=null",
            "--set", "trainer.max_minutes=10", "--set", f"seed={seed}"]
    for s in sets:
        args += ["--set", s]
    start = time.time()
    done = out / "summary.json"
    if not (done.is_file() and json.loads(done.read_text()).get("status") == "finished"):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    seconds = time.time() - start
    ev = out / f"eval_{score.name}"
    subprocess.run([mmtok, "eval", str(out), "--data", str(score), "--out", str(ev), "--no-rfid", "--classifier",
                    "none"], check=True, stdout=subprocess.DEVNULL)
    m = json.loads((ev / "metrics.json").read_text())["metrics"]
    keep = ("psnr", "used_codes", "possible_codes", "usage_of_possible_pct", "uniform_codes", "usage_of_uniform_pct",
            "perplexity")
    return {"overrides": sets, "seed": seed, "train_and_eval_seconds": round(seconds, 1), "psnr": m["psnr"],
            "ssim": m.get("ssim"), "by_scales": {k: {f: r[f] for f in keep} for k, r in m["by_scales"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, required=True, help="the output folder of eval/photos.py")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true", help="score on photos/heldout instead of the dev split")
    a = p.parse_args()
    train, dev = split(a.photos, a.work)
    score, key = (a.photos / "heldout", "report") if a.report else (dev, "dev")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")
    for name in a.only or list(VARIANTS):
        row = run(name, VARIANTS[name], a.seed, train, score, a.work)
        results.setdefault(key, {})[f"{name}, seed {a.seed}"] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for key in ("dev", "report"):
        rows = results.get(key, {})
        print(f"\n{key}: PSNR, then per scale codes used (% of a uniform draw)")
        for name, r in rows.items():
            scales = " ".join(f"{s}x{s} {v['used_codes']} ({v['usage_of_uniform_pct']:.0f}%)"
                              for s, v in r["by_scales"].items())
            print(f"  {name:28s} {r['psnr']:6.2f} dB  {scales}")


if __name__ == "__main__":
    main()
