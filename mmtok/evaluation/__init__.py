"""Evaluation of a trained tokenizer: `evaluate(model, data)` -> metrics, pictures and a report.

`evaluate` hands the work to the evaluator of the model's modality (`Modality.evaluate`, e.g.
mmtok.modalities.image.evaluate), which checks its own options and runs the one evaluation loop
(mmtok.evaluation.harness) with its metric suite, protocol and pictures. Importing this package loads neither
torch nor Lightning.
"""
from __future__ import annotations

import inspect
import os

from mmtok.errors import MmtokError
from mmtok.evaluation.output import eval_base as default_out


def evaluate(model_path: str | os.PathLike, data: str, **options) -> dict:
    """Evaluate the tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` with its modality's evaluator.

    Every evaluator takes the harness's options (mmtok.evaluation.harness.run: out, force, num_samples, batch_size,
    devices, accelerator, num_workers, ema, console, progress); the others are its own (images: resolution, rfid,
    fid_weights, reference_stats, save_reference_stats, classifier; audio: levels, bitrate). An option the modality does not have is one MmtokError, before any work.
    """
    from mmtok import families, modalities
    from mmtok.model_io import model_family

    modality = families.get(model_family(model_path)).modality
    from mmtok.evaluation.harness import run as harness_run

    evaluator = modalities.get(modality).resolve("evaluate")
    accepted = {name for fn in (evaluator, harness_run) for name, p in inspect.signature(fn).parameters.items()
                if p.kind is p.KEYWORD_ONLY}  # the modality's own options and the harness's
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        names = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise MmtokError(f"{names}: not an option for {modality} tokenizers",
                         hint="`mmtok eval --help` says which options apply to which modality")
    return evaluator(model_path, data, **options)


__all__ = ["default_out", "evaluate"]
