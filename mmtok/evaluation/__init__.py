"""Evaluation of a trained tokenizer: `evaluate(model, data)` -> metrics, pictures and a report.

`evaluate` hands the work to the evaluator of the model's modality (mmtok.modalities: images are
mmtok.evaluation.runner.evaluate_images, with its protocol). Importing this package loads neither torch nor
Lightning.
"""
from __future__ import annotations

import inspect
import os

from mmtok.errors import MmtokError
from mmtok.evaluation.runner import default_out


def evaluate(model_path: str | os.PathLike, data: str, **options) -> dict:
    """Evaluate the tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` with its modality's evaluator.

    Every evaluator takes out, force, num_samples, batch_size, devices, accelerator, num_workers, ema, console
    and progress; the others are its own (images: resolution, rfid, fid_weights, reference_stats,
    save_reference_stats, classifier). An option the modality does not have is one MmtokError, before any work.
    """
    from mmtok import families, modalities
    from mmtok.model_io import model_family

    modality = families.get(model_family(model_path)).modality
    run = modalities.get(modality).resolve("evaluate")
    accepted = inspect.signature(run).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(k for k in options if k not in accepted)
        if unknown:
            names = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise MmtokError(f"{names}: not an option for {modality} tokenizers",
                             hint=f"`mmtok eval --help` says which options apply to which modality")
    return run(model_path, data, **options)


__all__ = ["default_out", "evaluate"]
