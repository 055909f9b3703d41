"""EnCodec's own state dict in, checked against EnCodec's own code: EnCodec's code builds its 24 kHz model
(`EncodecModel.encodec_model_24khz(pretrained=False)`: the released architecture, nothing downloaded), trains it
briefly on speech (its k-means codebook init and EMA updates run in its own forward), and saves the state dict as
the released `encodec_24khz-*.th` is saved; `mmtok import encodec` turns the file into a bundle, whose ids and
decoded audio are compared with EnCodec's own encode / decode on held-out speech.

    apt-get install tuxpaint-stamps-default                            # the demo speech
    pip install --target /tmp/encodec_pkg --no-deps encodec torchaudio # EnCodec's code (+ einops), kept apart
    python eval/import_encodec.py --encodec /tmp/encodec_pkg [--steps 20]

--encodec is a folder holding EnCodec's `encodec` package (a checkout of facebookresearch/encodec, or pip's
--target folder). Training: --steps steps of L1 waveform loss + EnCodec's commitment loss (Adam lr 3e-4) on the
demo's training speech resampled to 24 kHz, 1 s segments, batch 4, all 32 codebooks in use (bandwidth 24 kbps), so
every level is k-means-initialised. Compared on --segments 1 s segments of the demo's validation speech at 24 kbps
(32 levels). Writes eval/results/import_encodec.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encodec", required=True, help="a folder holding EnCodec's `encodec` package")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--segments", type=int, default=32)
    ap.add_argument("--work", default="runs/import_encodec")
    ap.add_argument("--out", default=str(HERE / "results" / "import_encodec.json"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(args.encodec).resolve()))
    from encodec import EncodecModel

    import mmtok
    from mmtok import config
    from mmtok.data import make_loader
    from mmtok.export.interop import import_bundle

    torch.manual_seed(0)
    theirs = EncodecModel.encodec_model_24khz(pretrained=False)
    theirs.set_target_bandwidth(24.0)
    spec = config.load("audio_quickstart", ["model.preset=encodec_24k", "model.segment_seconds=1.0"]).model
    loader = make_loader("demo", "train", spec, batch_size=4, num_workers=1, seed=0, modality="audio")
    opt = torch.optim.Adam(theirs.parameters(), lr=3e-4)
    theirs.train()
    t0, losses = time.perf_counter(), []
    for step, batch in zip(range(args.steps), loader):
        x = batch["audio"]
        frames = theirs.encoder(x)
        q = theirs.quantizer(frames, theirs.frame_rate, theirs.bandwidth)
        y = theirs.decoder(q.quantized)
        loss = F.l1_loss(y, x) + q.penalty.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 4))
        print(f"EnCodec step {step + 1}: loss {losses[-1]}", flush=True)
    theirs.eval()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    file = work / "encodec_24khz-tiny-trained.th"
    torch.save(theirs.state_dict(), file)
    report = import_bundle("encodec", file, work / "bundle", force=True)
    mine = mmtok.load(work / "bundle").model

    test = make_loader("demo", "val", spec, batch_size=8, num_workers=0, max_samples=args.segments, modality="audio")
    differing = total = 0
    max_diff = scale = 0.0
    with torch.no_grad():
        for batch in test:
            x = batch["audio"]
            (codes, scale_), = theirs.encode(x)  # one frame: the 24 kHz model encodes the whole segment at once
            audio = theirs.decode([(codes, scale_)])
            ids = mine.encode(x)
            differing += int((ids != codes.transpose(1, 2)).sum())
            total += ids.numel()
            ours = mine.decode(codes.transpose(1, 2))
            max_diff = max(max_diff, float((ours - audio).abs().max()))
            scale = max(scale, float(audio.abs().max()))
    result = {"encodec_training": {"steps": len(losses), "seconds": round(time.perf_counter() - t0, 1),
                                   "losses": losses},
              "import_config": report["source"].config_from, "import_notes": report["source"].notes,
              "levels": int(report["source"].model["quantizer"]["levels"]), "segments": args.segments,
              "ids_differing": differing, "ids_total": total, "max_output_difference": max_diff,
              "output_scale": scale, "machine": {"python": platform.python_version(), "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("encodec_training", "machine")}, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
