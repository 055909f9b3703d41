"""A released-layout tokenizer in, checked and fine-tuned: LlamaGen's own code trains a VQ model briefly on one set of
pictures and saves it as LlamaGen's vq_train.py does; `mmtok import llamagen` turns the file into a bundle; the
bundle is compared with LlamaGen's own encode / decode (largest id and output differences); then it is fine-tuned
with mmtok on other photographs it never saw, and held-out PSNR / usage are measured before and after.

    apt-get install opencv-doc lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 tuxpaint-stamps-default
    git clone https://github.com/FoundationVision/LlamaGen /path/to/LlamaGen      # anywhere outside this repo
    python eval/import_llamagen.py --llamagen /path/to/LlamaGen [--seconds 300] [--steps 200]

LlamaGen's side is its own code, loaded from the checkout at run time (tokenizer/tokenizer_image/vq_model.py):
its Encoder, Decoder and VectorQuantizer (l2-normalised codes, usage buffer), at the width of eval/llamagen_peer.py
(ch 32, ch_mult [1, 2, 2, 4], one res block, z 64, 1024 codes of dim 8: f8, attention at the lowest level and in
the middle), trained with L2 + its codebook and commitment losses (Adam lr 4e-4, betas 0.9 / 0.95, clip 1.0) for
--seconds on the Tux Paint stamps of eval/photos.py's training split (cut-outs on white), then saved as
{"model", "steps", "args": argparse.Namespace} like vq_train.py.

The split (eval/photos.py, by file name; nothing here is tuned on the test sets):
    pretrain   training split, tuxpaint stamps          (LlamaGen's code trains on these)
    finetune   training split, opencv + wallpaper photos (mmtok fine-tunes on these)
    test       held-out split, opencv + wallpaper photos (never seen by either)
    stamps     held-out split, tuxpaint stamps           (what the fine-tune may forget)

Fine-tunes from the imported bundle's recipe.yaml with `init.path` (--steps steps, batch 16, lr 1e-4, no warm-up,
perceptual off: LPIPS weights are not available offline): "l2" without an adversary; "l2+gan" adds the PatchGAN
(weight 0.5, hinge) with a fresh discriminator that trains alone for the first third of the steps. Scored by
eval/compare_llamagen.py's protocol (centre 64 x 64 crops, PSNR on [0, 1], distinct codes / codebook size), EMA
weights for mmtok's fine-tunes. Writes eval/results/import_llamagen.json and prints a table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_llamagen import RESOLUTION, evaluate, load_heldout  # noqa: E402
from llamagen_peer import VQ_MODEL_FILE, load_llamagen  # noqa: E402
from photos import collect_photos  # noqa: E402

SIZES = dict(ch=32, ch_mult=[1, 2, 2, 4], num_res_blocks=1, z_channels=64, codebook_size=1024, dim=8)


def build_llamagen(lg) -> nn.Module:
    """LlamaGen's VQModel built from its own Encoder / Decoder / VectorQuantizer at SIZES."""

    class SmallVQModel(lg.VQModel):
        def __init__(self):
            nn.Module.__init__(self)  # VQModel.__init__ hard-codes ch=128 and two res blocks
            s = SIZES
            self.config = lg.ModelArgs(codebook_size=s["codebook_size"], codebook_embed_dim=s["dim"],
                                       encoder_ch_mult=s["ch_mult"], decoder_ch_mult=s["ch_mult"],
                                       z_channels=s["z_channels"])
            kw = dict(ch=s["ch"], ch_mult=s["ch_mult"], num_res_blocks=s["num_res_blocks"], z_channels=s["z_channels"])
            self.encoder, self.decoder = lg.Encoder(**kw), lg.Decoder(**kw)
            self.quantize = lg.VectorQuantizer(s["codebook_size"], s["dim"], 0.25, 0.0, True, True)
            self.quant_conv = nn.Conv2d(s["z_channels"], s["dim"], 1)
            self.post_quant_conv = nn.Conv2d(s["dim"], s["z_channels"], 1)
            # LlamaGen registers its usage log as a buffer holding an nn.Parameter that requires grad; torch 2 refuses
            # its in-place update in training, so the log (not a weight) is made grad-free.
            self.quantize.codebook_used.requires_grad_(False)

    return SmallVQModel()


def train_llamagen(model, folder: Path, seconds: float, seed: int) -> dict:
    from mmtok.data import make_loader

    loader = make_loader(str(folder), "train", RESOLUTION, batch_size=16, num_workers=1, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=4e-4, betas=(0.9, 0.95))
    model.train()
    batches, step, t0, recent = iter(loader), 0, time.perf_counter(), []
    while time.perf_counter() - t0 < seconds:
        x = next(batches)["image"]
        recon, (vq_loss, commit, entropy, _) = model(x)
        loss = F.mse_loss(recon, x) + vq_loss + commit + entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent = (recent + [loss.item()])[-10:]
        if step % 100 == 0:
            print(f"LlamaGen step {step}: loss {recent[-1]:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "loss": round(sum(recent) / len(recent), 5)}


@torch.no_grad()
def parity(model, bundle: Path, images: torch.Tensor) -> dict:
    """LlamaGen's own encode / decode_code against the imported bundle on `images` (uint8)."""
    import mmtok

    tok = mmtok.load(bundle).model
    x = images.float() / 127.5 - 1
    _, _, (_, _, ids) = model.encode(x)
    b, g = x.shape[0], RESOLUTION // 8
    ids = ids.reshape(b, g, g)
    theirs = model.decode_code(ids.reshape(-1), shape=(b, SIZES["dim"], g, g))
    mine_ids = tok.encode(x)
    mine = tok.decode(ids)
    return {"images": b, "ids_differing": int((mine_ids != ids).sum()), "ids_total": int(ids.numel()),
            "max_output_difference": float((mine - theirs).abs().max()),
            "output_scale": float(theirs.abs().max())}


def fine_tune(bundle: Path, folder: Path, run: Path, steps: int, gan: bool, seed: int) -> dict:
    from mmtok import config
    from mmtok.train.run import train

    sets = [f"init.path={bundle}", f"data.train={folder}", "data.val=null", "data.batch_size=16",
            "data.num_workers=1", f"trainer.max_steps={steps}", "trainer.max_minutes=null", "trainer.accelerator=cpu",
            "trainer.devices=1", f"trainer.ckpt_every={steps}", "optim.lr=1e-4", "optim.warmup_steps=0",
            "loss.weights.perceptual=0", f"seed={seed}"]
    sets += (["loss.weights.gan=0.5", "loss.gan.start_step=0", f"loss.gan.warmup_steps={steps // 3}"] if gan
             else ["loss.weights.gan=0"])
    if run.exists():
        shutil.rmtree(run)
    summary = train(config.load(str(bundle / "recipe.yaml"), sets), run)
    return {"steps": summary["step"], "seconds": summary["seconds"], "overrides": sets}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llamagen", required=True, help="a LlamaGen checkout or its vq_model.py")
    ap.add_argument("--work", default="runs/import_llamagen")
    ap.add_argument("--seconds", type=float, default=300.0, help="LlamaGen's training budget")
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "import_llamagen.json"))
    args = ap.parse_args(argv)

    from mmtok.export.interop import import_bundle
    from mmtok.model_io import load_model

    torch.manual_seed(args.seed)
    work = Path(args.work)
    photos = work / "photos"
    collect_photos(photos)
    split = {"pretrain": ("train", ("tuxpaint",)), "finetune": ("train", ("opencv", "wallpapers")),
             "test": ("heldout", ("opencv", "wallpapers")), "stamps": ("heldout", ("tuxpaint",))}
    for name, (part, sources) in split.items():
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for f in sorted((photos / part).iterdir()):
            if f.name.split("__")[0] in sources:
                shutil.copyfile(f, folder / f.name)
    counts = {name: len(list((work / name).iterdir())) for name in split}
    print("images:", counts, flush=True)

    lg = load_llamagen(args.llamagen)
    model = build_llamagen(lg)
    pre = train_llamagen(model, work / "pretrain", args.seconds, args.seed)
    ckpt = work / "llamagen_vq.pt"
    torch.save({"model": model.state_dict(), "steps": pre["steps"],
                "args": argparse.Namespace(vq_model="small", image_size=RESOLUTION,
                                           codebook_size=SIZES["codebook_size"], codebook_embed_dim=SIZES["dim"])},
               ckpt)
    bundle = work / "bundle"
    imported = import_bundle("llamagen", ckpt, bundle, force=True)

    tests = {name: load_heldout(work / name)[0] for name in ("test", "stamps")}
    check = {name: parity(model, bundle, images) for name, images in tests.items()}
    print("parity with LlamaGen's own code:", json.dumps(check), flush=True)

    def score(m) -> dict:
        def tokenizer(x):
            out = m(x)
            return out.recon, out.ids

        return {name: {k: v for k, v in evaluate(tokenizer, images, SIZES["codebook_size"]).items()
                       if not k.startswith("_")} for name, images in tests.items()}

    results = {"imported (before)": score(load_model(bundle)[0])}
    runs = {}
    for label, gan in (("fine-tuned, l2", False), ("fine-tuned, l2+gan (fresh D, warm-up)", True)):
        run = work / ("ft_gan" if gan else "ft_l2")
        runs[label] = fine_tune(bundle, work / "finetune", run, args.steps, gan, args.seed)
        results[label] = score(load_model(run)[0])

    file = Path(args.llamagen) if Path(args.llamagen).is_file() else Path(args.llamagen) / VQ_MODEL_FILE
    report = {"llamagen_training": pre, "llamagen_vq_model_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
              "sizes": SIZES, "images": counts, "import_notes": imported["source"].notes,
              "import_config": imported["source"].config_from, "parity": check, "fine_tunes": runs,
              "results": results, "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                               "threads": torch.get_num_threads()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'':40s} {'test PSNR':>10s} {'usage':>7s} {'stamps PSNR':>12s} {'usage':>7s}")
    for label, r in results.items():
        print(f"{label:40s} {r['test']['psnr_db']:10.2f} {r['test']['usage']:7.3f} "
              f"{r['stamps']['psnr_db']:12.2f} {r['stamps']['usage']:7.3f}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
