"""mmtok's audio quick start against DAC's own model code at equal wall time, on the same speech.

    python eval/compare_dac.py --mmtok-run runs/audio_quickstart --out eval/results/audio_compare_dac \
        --test asterisk_it_menardi asterisk_es_co asterisk_fr_armelle

Both sides train on the same data stream (the built-in demo speech: mmtok's "demo" train split, 16 kHz mono,
0.5 s segments, batch 16, the same loader), for the same wall-clock budget (the quick start's
trainer.max_minutes), on the same machine, one after the other. mmtok's side is the `audio_quickstart` recipe
(trained here unless --mmtok-run names a finished run of it). DAC's side is DAC's own code (PyPI
`descript-audio-codec`: `dac.model.DAC`, `dac.model.discriminator.Discriminator`, `dac.nn.loss`) in its small
configuration (conf/size/small.yml: decoder_dim 512, encoder_dim 64) with its 16 kHz strides (conf/final/16khz.yml:
[2, 4, 5, 8], hop 320, 50 frames/s), the bitrate matched to mmtok's (8 codebooks of 256 codes, dim 8: 3.2 kbps)
and DAC's training step (scripts/train.py): AdamW lr 1e-4, betas (0.8, 0.99), ExponentialLR 0.999996,
discriminator step then generator step, weights mel 15, feature matching 2, adversarial 1, commitment 0.25,
codebook 1, gradient clipping 1000 (G) / 10 (D). DAC's decoder ends a few samples short at these strides (see
`fit_length`): its output is zero-padded to the input's length. `--no-adversary` drops DAC's discriminator (mel + VQ terms only,
like mmtok's quick start).

Held-out tests (--test, several in one run): the demo's reserved French clips (mmtok.modalities.audio.demo, never used
by either training or by mmtok's validation) and Debian's asterisk telephone prompts (8 kHz recordings of one
speaker each, ASTERISK_SETS: asterisk_en, _fr, _es, _it, _ru from `apt-get install asterisk-core-sounds-LANG-wav`;
asterisk_it_menardi, asterisk_es_co and asterisk_fr_armelle from the asterisk-prompt-* packages, the last two GSM
files decoded with sox). The reserved French and the English, French, Spanish, Italian and Russian core prompts
were used to choose the quick start's codebook rules (restart_below, the entropy term); the Menardi Italian,
Colombian Spanish and Armelle French prompts were first scored after that choice and are the default sets.
Each set is cut into consecutive 0.5 s segments; both models
reconstruct the same segments, scored by the same code (mmtok.metrics.audio: DAC's mel distance and STFT
distance definitions, SI-SDR, usage per level). Writes OUT.json and OUT_TEST.png per test set (log-mel spectrograms: original, mmtok, DAC).

DAC's package imports torchaudio, which has no build for the torch mmtok uses; install it beside mmtok without
dependencies, ideally in a separate environment layered on mmtok's (see the README's audio section):
    pip install --no-deps descript-audio-codec descript-audiotools torchaudio argbind julius einops flatten-dict \
        randomname ffmpy importlib-resources markdown2 tensorboard protobuf absl-py docstring-parser matplotlib
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SEGMENTS = 256


def dac_modules(sample_rate: int, levels: int, codebook_size: int, adversary: bool):
    """(generator, discriminator or None, losses) of DAC's small configuration at the quick start's rate."""
    try:
        from dac.model import DAC
        from dac.model.discriminator import Discriminator
        from dac.nn import loss
    except ImportError as e:
        sys.exit(f"error: DAC's code is not importable ({e}); install it as this file's docstring says")
    generator = DAC(encoder_dim=64, encoder_rates=[2, 4, 5, 8], decoder_dim=512, decoder_rates=[8, 5, 4, 2],
                    n_codebooks=levels, codebook_size=codebook_size, codebook_dim=8, quantizer_dropout=0.5,
                    sample_rate=sample_rate)
    disc = Discriminator(rates=[], periods=[2, 3, 5, 7, 11], fft_sizes=[2048, 1024, 512],
                         sample_rate=sample_rate) if adversary else None
    losses = {"mel": loss.MelSpectrogramLoss(n_mels=[5, 10, 20, 40, 80, 160, 320],
                                             window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
                                             mel_fmin=[0.0] * 7, mel_fmax=[None] * 7, pow=1.0, clamp_eps=1e-5,
                                             mag_weight=0.0),
              "gan": loss.GANLoss(disc) if adversary else None}
    return generator, disc, losses


def train_dac(loader, minutes: float, sample_rate: int, levels: int, codebook_size: int, adversary: bool,
              lr: float) -> tuple[torch.nn.Module, dict]:
    from audiotools import AudioSignal

    torch.manual_seed(0)
    gen, disc, losses = dac_modules(sample_rate, levels, codebook_size, adversary)
    opt_g = torch.optim.AdamW(gen.parameters(), lr=lr, betas=(0.8, 0.99))
    sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, 0.999996)
    if disc is not None:
        opt_d = torch.optim.AdamW(disc.parameters(), lr=lr, betas=(0.8, 0.99))
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, 0.999996)
    lambdas = {"mel": 15.0, "feat": 2.0, "gen": 1.0, "commitment": 0.25, "codebook": 1.0}
    gen.train()
    start, steps, last = time.perf_counter(), 0, {}
    for batch in loader:
        signal = AudioSignal(batch["audio"], sample_rate)
        out = gen(signal.audio_data, signal.sample_rate)
        recons = AudioSignal(fit_length(out["audio"], signal.audio_data.shape[-1]), signal.sample_rate)
        terms = {"commitment": out["vq/commitment_loss"], "codebook": out["vq/codebook_loss"]}
        if disc is not None:
            d_loss = losses["gan"].discriminator_loss(recons, signal)
            opt_d.zero_grad()
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), 10.0)
            opt_d.step()
            sched_d.step()
            terms["gen"], terms["feat"] = losses["gan"].generator_loss(recons, signal)
        terms["mel"] = losses["mel"](recons, signal)
        total = sum(lambdas[k] * v for k, v in terms.items())
        opt_g.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), 1e3)
        opt_g.step()
        sched_g.step()
        steps += 1
        last = {k: round(float(v), 4) for k, v in terms.items()}
        if steps % 10 == 0:
            print(f"dac step {steps}: " + ", ".join(f"{k} {v}" for k, v in last.items()), flush=True)
        if time.perf_counter() - start >= minutes * 60:
            break
    seconds = time.perf_counter() - start
    return gen.eval(), {"steps": steps, "seconds": round(seconds, 1), "last_terms": last,
                        "params_generator_m": round(sum(p.numel() for p in gen.parameters()) / 1e6, 3),
                        "params_discriminator_m": round(sum(p.numel() for p in disc.parameters()) / 1e6, 3)
                        if disc is not None else 0.0}


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """DAC's decoder gives 5L - 1 samples for L frames at each stride-5 upsampling (its transposed convs have no
    output padding), so at the 16 kHz strides its output is a few samples short: zero-pad (or crop) to `length`."""
    n = audio.shape[-1]
    return torch.nn.functional.pad(audio, (0, length - n)) if n < length else audio[..., :length]


# name: (folder under /usr/share/asterisk/sounds, file suffix, Debian package, what it is): the speakers' own folders
# where they have one, not the en / es / fr / it links, which point at whichever package was installed last; the two
# GSM sets install into es/ and fr/ themselves and are told apart from a linked WAV speaker by their suffix.
ASTERISK_SETS = {
    "asterisk_en": ("en_US_f_Allison", ".wav", "asterisk-core-sounds-en-wav",
                    "568 English telephone prompts by one speaker (8 kHz recordings, upsampled)"),
    "asterisk_fr": ("fr_CA_f_June", ".wav", "asterisk-core-sounds-fr-wav",
                    "French (Canadian) telephone prompts by one speaker (8 kHz recordings, upsampled)"),
    "asterisk_es": ("es_MX_f_Allison", ".wav", "asterisk-core-sounds-es-wav",
                    "527 Spanish (Mexican) telephone prompts by one speaker (8 kHz recordings, upsampled)"),
    "asterisk_it": ("it_IT_m_Carlo", ".wav", "asterisk-core-sounds-it-wav",
                    "599 Italian telephone prompts by one (male) speaker (8 kHz recordings, upsampled)"),
    "asterisk_ru": ("ru_RU_f_IvrvoiceRU", ".wav", "asterisk-core-sounds-ru-wav",
                    "576 Russian telephone prompts by one speaker (8 kHz recordings, upsampled)"),
    "asterisk_it_menardi": ("it_IT_f_Menardi", ".wav", "asterisk-prompt-it-menardi-wav",
                            "555 Italian telephone prompts by another (female) speaker (8 kHz recordings, upsampled)"),
    "asterisk_es_co": ("es", ".gsm", "asterisk-prompt-es-co",
                       "285 Colombian Spanish telephone prompts by one speaker (8 kHz GSM 06.10, decoded with sox)"),
    "asterisk_fr_armelle": ("fr", ".gsm", "asterisk-prompt-fr-armelle",
                            "327 French telephone prompts by Armelle Desjardins (8 kHz GSM 06.10, decoded with sox)"),
}
TEST_SETS = {
    "reserved_fr": "the demo's reserved French descriptions (Tux Paint, 44.1 kHz; never trained or validated on)",
    **{name: f"Debian {package}: {what}" for name, (_, _, package, what) in ASTERISK_SETS.items()},
}
ASTERISK = Path("/usr/share/asterisk/sounds")


def test_sets(names: list[str], tmp: Path):
    """(name, folder) of each test set: the demo's reserved French clips (linked into `tmp`), a Debian asterisk
    prompt set (ASTERISK_SETS; GSM prompts are decoded to WAV in `tmp` with sox), or a folder."""
    from mmtok.modalities.audio.demo import demo_files, demo_root

    for name in names:
        if name == "reserved_fr":
            base, folder = demo_root(), tmp / name
            folder.mkdir(parents=True, exist_ok=True)
            for f in demo_files("reserved"):
                link = folder / f.relative_to(base).as_posix().replace("/", "__")
                if not link.exists():
                    link.symlink_to(f)
            yield name, folder
        elif name in ASTERISK_SETS:
            sub, suffix, package, _ = ASTERISK_SETS[name]
            folder = ASTERISK / sub
            files = sorted(folder.glob(f"**/*{suffix}")) if folder.is_dir() else []
            if files and suffix == ".wav":
                yield name, folder.resolve()
            elif files:
                if shutil.which("sox") is None:
                    sys.exit(f"error: {name} is GSM audio, decoded with sox: apt-get install sox")
                out = tmp / name
                for f in files:
                    wav = out / f.relative_to(folder).with_suffix(".wav")
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["sox", str(f), str(wav)], check=True)
                yield name, out
            else:
                sys.exit(f"error: no prompts in {folder}: apt-get install {package}")
        else:
            yield Path(name).name, Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmtok-run", help="a finished audio_quickstart run (default: train one into runs/NAME, NAME = OUT's)")
    parser.add_argument("--out", default="eval/results/audio_compare_dac", help="OUT.json and OUT.png are written")
    parser.add_argument("--minutes", type=float, help="training budget of each side (default: the recipe's "
                        "trainer.max_minutes)")
    parser.add_argument("--segments", type=int, default=SEGMENTS, help="held-out segments scored")
    parser.add_argument("--no-adversary", action="store_true", help="train DAC without its discriminator")
    parser.add_argument("--lr", type=float, default=1e-4, help="DAC's learning rate (its recipe: 1e-4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test", nargs="+", default=["asterisk_it_menardi", "asterisk_es_co", "asterisk_fr_armelle"],
                        metavar="NAME_OR_FOLDER", help=f"test sets scored: {', '.join(TEST_SETS)} or any folder of "
                        "audio (default: the three never used in tuning)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mmtok import config
    from mmtok.data import make_loader
    from mmtok.metrics.audio import AudioDistances, LevelUsage
    from mmtok.model_io import load_model
    from mmtok.modalities.audio.samples import spectrogram_rows

    out = Path(args.out)
    recipe = config.load("audio_quickstart")
    minutes = args.minutes or recipe.trainer.max_minutes
    spec, sr = recipe.model, recipe.model.sample_rate
    q = spec.quantizer

    run = Path(args.mmtok_run) if args.mmtok_run else Path("runs") / out.name
    if not args.mmtok_run:
        from mmtok.train.run import train

        train(config.load("audio_quickstart", [f"trainer.max_minutes={minutes}"]), run)
    summary = json.loads((run / "summary.json").read_text())
    model, mm_recipe, info = load_model(run)
    if mm_recipe.model != spec:
        sys.exit(f"error: {run} was not trained with the audio_quickstart model section")

    loader = make_loader("demo", "train", spec, batch_size=recipe.data.batch_size, num_workers=1,
                         seed=recipe.seed, modality="audio")
    dac, dac_info = train_dac(loader, minutes, sr, q.levels, q.codebook_size, not args.no_adversary, args.lr)

    protocol = {
        "train_data": "mmtok demo train split (Tux Paint spoken descriptions, 10 languages), 16 kHz mono, 0.5 s "
                      f"segments, batch {recipe.data.batch_size}, one loader",
        "budget_minutes": minutes, "threads": args.threads,
        "metrics": "mmtok.metrics.audio.AudioDistances for both: DAC's mel distance (7 scales) and STFT distance "
                   "(2048, 512), SI-SDR (dB); reconstructions clamped to [-1, 1]; usage per level over the test",
        "dac_config": "DAC(encoder_dim=64, encoder_rates=[2,4,5,8], decoder_dim=512, decoder_rates=[8,5,4,2], "
                      f"n_codebooks={q.levels}, codebook_size={q.codebook_size}, codebook_dim=8, "
                      f"quantizer_dropout=0.5, sample_rate={sr}); AdamW lr {args.lr}, betas (0.8, 0.99); "
                      + ("MPD + MRD discriminator, mel 15, feat 2, gen 1" if not args.no_adversary else
                         "no discriminator, mel 15") + ", commitment 0.25, codebook 1",
        "test_data": {},
    }
    result = {"protocol": protocol, "tests": {}}
    info = {"mmtok": {"run": str(run), "steps": summary["step"], "seconds": summary["seconds"],
                      "params_generator_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)},
            "dac": dac_info}
    kbps = q.levels * math.log2(q.codebook_size) * spec.frame_rate / 1000
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in test_sets(args.test, Path(tmp)):
            test = make_loader(str(folder), "val", spec, batch_size=16, num_workers=0, max_samples=args.segments,
                               modality="audio")
            scores = {"mmtok": AudioDistances(sr), "dac": AudioDistances(sr)}
            usage = {"mmtok": LevelUsage(q.codebook_size, q.levels), "dac": LevelUsage(q.codebook_size, q.levels)}
            shown, n = None, 0
            with torch.no_grad():
                for batch in test:
                    x = batch["audio"]
                    ids = model.encode(x)
                    recon = {"mmtok": model.decode(ids).clamp(-1, 1)}
                    d = dac(x, sr)
                    recon["dac"] = fit_length(d["audio"], x.shape[-1]).clamp(-1, 1)
                    usage["mmtok"].update(ids)
                    usage["dac"].update(d["codes"].transpose(1, 2))
                    for k in scores:
                        scores[k].update(x, recon[k])
                    if shown is None:
                        shown = [("original", x[:4]), ("mmtok audio_quickstart", recon["mmtok"][:4]),
                                 ("DAC small (its code)", recon["dac"][:4])]
                    n += x.shape[0]
            protocol["test_data"][name] = f"{TEST_SETS.get(name, folder)}; consecutive 0.5 s segments, first {n}"
            entry = {"segments": n}
            for k in scores:
                values = {m: round(float(v), 4) for m, v in scores[k].compute().items()}
                u = usage[k].compute()["usage"]
                values["usage_min_pct"] = round(100 * float(u.min()), 2)
                values["usage_mean_pct"] = round(100 * float(u.mean()), 2)
                entry[k] = {**values, **info[k], "kbps": kbps}
            result["tests"][name] = entry
            if shown is not None:
                spectrogram_rows(shown, sr, out.with_name(f"{out.name}_{name}.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'test':10} {'':8} {'mel dist':>9} {'STFT dist':>9} {'SI-SDR':>8} {'usage min%':>10} {'steps':>6} {'kbps':>5}")
    for name, entry in result["tests"].items():
        for k in ("mmtok", "dac"):
            r = entry[k]
            print(f"{name:10} {k:8} {r['mel_distance']:9.3f} {r['stft_distance']:9.3f} {r['si_sdr']:8.2f} "
                  f"{r['usage_min_pct']:10.1f} {r['steps']:6d} {r['kbps']:5.1f}")
    print(f"wrote {out.with_suffix('.json')} and {out.name}_TEST.png beside it")


if __name__ == "__main__":
    main()
