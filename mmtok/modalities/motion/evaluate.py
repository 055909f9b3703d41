"""`mmtok eval` for motion tokenizers: one pass over held-out windows with MPJPE, PA-MPJPE, acceleration error,
codebook usage and perplexity, stick-figure strips and an animation.

Protocol: the "val" split of the data source (mmtok.modalities.motion.sources: every clip cut into consecutive non-overlapping
windows of the model's window length, at its fps, in its feature layout); EMA weights unless told otherwise;
raw features in, raw features out (the model applies its own Mean/Std); joint positions recovered from the
original and the reconstructed features alike (HumanML3D's recover_from_ric: each window starts at the origin,
facing +Z); MPJPE root-aligned, PA-MPJPE after a per-frame similarity Procrustes alignment, acceleration error
in mm per frame^2 at the model's fps (MotionGPT's MRMetrics); codebook statistics over the whole pass on all
ranks; encode and decode throughput timed apart (windows/s), in the one evaluation loop
(mmtok.evaluation.harness). Results: metrics.json, report.md, strips.png, animation.gif, codebook_usage.png,
codebook_counts.npy.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmtok.evaluation.harness import EvalPass, run

STRIP_WINDOWS = 4


def evaluate_motion(model_path: str | os.PathLike, data: str, **options) -> dict:
    """Evaluate the motion tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` ("demo" or a folder of
    clips); `options` are the harness's (mmtok.evaluation.harness.run: out, force, num_samples (windows),
    batch_size, devices, ...). metrics.json also holds "per_clip" MPJPE."""
    return run(model_path, data, MotionPass, **options)


class MotionPass(EvalPass):
    unit = "windows"

    def __init__(self, model, recipe):
        super().__init__(model, recipe)
        self.kept: list[tuple] = []  # (clip, start, x, recon) on rank 0, for pictures
        self.per_clip: dict[str, list[float]] = {}
        self.fps = float(recipe.model.fps)

    def setup(self, device, *, console, is_main: bool, world: int) -> None:
        from mmtok.modalities.motion.objective import MotionMetrics

        self.is_main = is_main
        self.suite = MotionMetrics(self.model.layout, self.spec.codebook_size, self.spec.num_codebooks).to(device)
        if world > 1:
            self.warnings.append("per_clip MPJPE covers rank 0's windows only")

    def decode(self, ids):
        return self.model.decode(ids).float()

    def update(self, batch: dict, x, ids, recon) -> None:
        from mmtok.contract import TokenizerOutput
        from mmtok.metrics.motion import mpjpe
        from mmtok.modalities.motion.recover import recover_joints

        layout = self.model.layout
        self.suite.update(x, TokenizerOutput(recon=recon, ids=ids))
        errs = mpjpe(recover_joints(recon, layout), recover_joints(x, layout)).mean(-1)
        for clip, err in zip(batch["clip"], errs.tolist()):
            self.per_clip.setdefault(clip, []).append(err)
        if self.is_main:
            self.kept += [(c, s, a.cpu(), b.cpu()) for c, s, a, b in zip(batch["clip"], batch["start"], x, recon)]

    def metrics(self, num_samples: int) -> dict:
        values = self.suite.compute()
        return {"mpjpe_mm": float(values["mpjpe"]), "pa_mpjpe_mm": float(values["pa_mpjpe"]),
                "accel_error_mm": float(values["accel"])}

    def protocol(self) -> dict:
        return {
            "window": int(self.recipe.model.window), "fps": self.fps, "features": self.spec["features"],
            "feature_dim": self.spec["feature_dim"],
            "windows": "every clip cut into consecutive non-overlapping windows from its first frame",
            "joints": "recovered from raw features (HumanML3D recover_from_ric); each window starts at the origin",
            "mpjpe": "root-aligned mean joint error, mm; PA-MPJPE after per-frame similarity Procrustes; "
                     "acceleration error in mm per frame^2 (MotionGPT MRMetrics)",
        }

    def extra(self) -> dict:
        return {"per_clip": {c: {"windows": len(v), "mpjpe_mm": sum(v) / len(v)}
                             for c, v in sorted(self.per_clip.items())}}

    def write(self, out: Path, result: dict) -> dict[str, str]:
        import torch

        from mmtok.modalities.motion.plots import save_animation, save_strips
        from mmtok.modalities.motion.recover import recover_joints

        kept, layout, fps = self.kept, self.model.layout, self.fps
        if not kept:
            return {}
        picks = kept[:STRIP_WINDOWS]
        save_strips(recover_joints(torch.stack([p[2] for p in picks]), layout),
                    recover_joints(torch.stack([p[3] for p in picks]), layout), layout, out / "strips.png",
                    fps=fps, labels=[f"{c} @{s / fps:.1f}s" for c, s, _, _ in picks])
        first = kept[0][0]
        clip = [p for p in kept if p[0] == first]  # consecutive windows of the first clip: one continuous motion
        x = torch.cat([p[2] for p in clip])
        recon = torch.cat([p[3] for p in clip])
        save_animation(recover_joints(x, layout), recover_joints(recon, layout), layout, out / "animation.gif",
                       fps=fps, title=first)
        return {"strips": "strips.png", "animation": "animation.gif"}

    def report(self, result: dict) -> str:
        return report_markdown(result)


def report_markdown(result: dict) -> str:
    """report.md of a motion evaluation: model, protocol, metrics, per-clip MPJPE, pictures."""
    from mmtok.evaluation.report import metric_rows, timing_line

    model, proto, m = result["model"], result["protocol"], result["metrics"]
    labels = {"mpjpe_mm": "MPJPE (mm, root-aligned)", "pa_mpjpe_mm": "PA-MPJPE (mm)",
              "accel_error_mm": "acceleration error (mm/frame^2)"}
    rows = [(labels[k], f"{m[k]:.1f}") for k in labels if k in m]
    rows += [(label, value) for label, value in metric_rows({k: v for k, v in m.items() if k not in labels})]
    lines = [
        f"# Evaluation of {model.get('recipe_name')} ({model.get('path')})", "",
        f"{proto['num_samples']} windows of {proto['window']} frames at {proto['fps']:g} fps of `{proto['data']}` "
        f"({proto['split']} split, {proto['features']} features), {model['weights']} weights"
        + (f" (step {model['step']})" if model.get("step", -1) >= 0 else "")
        + f", mmtok {result['mmtok_version']}, seed {proto['seed']}, {proto['devices']} device(s) ({proto['device']}).",
        "", "| metric | value |", "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in rows]
    lines.append("")
    if result.get("per_clip"):
        lines += ["| clip | windows | MPJPE (mm) |", "|---|---|---|"]
        lines += [f"| {c} | {v['windows']} | {v['mpjpe_mm']:.1f} |" for c, v in result["per_clip"].items()]
        lines.append("")
    if result.get("warnings"):
        lines += ["Warnings:", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    lines += [f"Joints: {proto['joints']}. MPJPE: {proto['mpjpe']}. Throughput: {proto['throughput']}.", "",
              f"Time: {timing_line(result.get('timing'))}.", ""]
    if model.get("note"):
        lines += [f"Note: {model['note']}", ""]
    files = result.get("files", {})
    if "strips" in files:
        lines += ["## Stick figures (each window: original above, reconstruction below)", "",
                  f"![strips]({files['strips']})", "", f"Animation of the first clip: [{files['animation']}]"
                  f"({files['animation']})", ""]
    lines += ["## Codebook usage (code frequencies, sorted, log scale)", "", f"![codebook usage]({files['usage_plot']})", ""]
    return "\n".join(lines)
