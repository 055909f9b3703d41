"""`mmtok eval` for image tokenizers: rFID, PSNR, SSIM, LPIPS, classifier agreement, semantic cosine, codebook usage
and throughput in one pass of the harness (mmtok.evaluation.harness), with its rFID protocol (fid_protocol.py).

Protocol: the "val" split of the data source (shorter side resized to R, bicubic antialiased, centre crop R x R);
reconstructions clamped to [-1, 1] and quantised to 8 bits before every metric (the PSNR protocol validation
uses); PSNR and SSIM on [0, 1] images with data_range 1.0; rFID from Inception-v3 pool3 features of the cropped
originals (or precomputed reference statistics) and of the reconstructions. Pictures: reconstructions.png.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmtok.errors import AssetError, MmtokError
from mmtok.evaluation.harness import SPLIT, EvalPass, run
from mmtok.evaluation.report import UNAVAILABLE
from mmtok.modalities.image import fid_protocol

GRID_IMAGES = 8
NO_PIXELS = "no pixel decoder: this tokenizer's ids decode to embeddings, not images"
CROP = "shorter side resized to {r} (bicubic, antialiased), centre crop {r}x{r}"


def evaluate(model_path: str | os.PathLike, data: str, *, resolution: int | None = None,
             fid_weights: str | None = None, reference_stats: str | None = None,
             save_reference_stats: str | None = None, rfid: bool = True,
             classifier: str | None = "efficientnet_lite2", probe: str | None = None, **options) -> dict:
    """Evaluate the image tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` (any mmtok data source);
    `options` are the harness's (mmtok.evaluation.harness.run: out, force, num_samples, batch_size, devices, ...).

    Named files are checked before any work (MmtokError): `fid_weights` and `reference_stats` must exist
    (an explicitly named FID network that is missing or unreadable is an error, not "unavailable"), stats
    files are .npz or .safetensors, and reference statistics must match this evaluation's resolution, crop
    and FID network. `rfid=False` skips rFID (reported "unavailable", skipped on request).

    Semantic fidelity: `classifier` (an ImageNet classifier of mmtok.teachers.CLASSIFIERS, None to skip) gives the
    top-1 agreement between originals and reconstructions ("unavailable" when its weights are missing); a model
    with a semantic branch (`teacher_features(x)`, `semantic_embedding(ids)`) also gets the mean cosine between
    the two ("semantic_cosine").

    `probe`: a labelled image set (a folder of class folders, or shards whose samples carry a class); the k-NN and
    linear-probe top-1 of features computed from the tokens, beside chance, a pixel floor and the teacher's
    features (mmtok.modalities.image.probe), go into metrics.json["probe"] (checked before any work).
    """
    if reference_stats and save_reference_stats:
        raise MmtokError("--reference-stats and --save-reference-stats together: the loaded statistics would "
                         "just be written back", hint="give one of them")
    if not rfid and (fid_weights or reference_stats or save_reference_stats):
        raise MmtokError("--no-rfid with --fid-weights, --reference-stats or --save-reference-stats",
                         hint="those flags are for rFID; drop --no-rfid or them")
    for path, flag in ((reference_stats, "--reference-stats"), (save_reference_stats, "--save-reference-stats")):
        if path:
            fid_protocol.check_stats_path(path, flag)
    if reference_stats and not Path(reference_stats).is_file():
        raise MmtokError(f"--reference-stats {reference_stats}: no such file",
                         hint="save them first with --save-reference-stats, or omit the flag")
    fid_path, fid_why = None, "skipped on request (--no-rfid)"
    if rfid:
        wanted_by = ("--reference-stats" if reference_stats else
                     "--save-reference-stats" if save_reference_stats else None)
        fid_path, fid_why = _find_fid(fid_weights, wanted_by=wanted_by)
    labelled = None
    if probe:
        from mmtok.modalities.image.probe import open_labelled

        labelled = open_labelled(probe)

    def make_pass(model, recipe):
        return ImagePass(model, recipe, data=data, resolution=resolution, fid_path=fid_path, fid_why=fid_why,
                         rfid=rfid, reference_stats=reference_stats, save_reference_stats=save_reference_stats,
                         classifier=classifier, labelled=labelled)

    return run(model_path, data, make_pass, **options)


class ImagePass(EvalPass):
    unit = "images"

    def __init__(self, model, recipe, *, data: str, resolution: int | None, fid_path: Path | None, fid_why: str,
                 rfid: bool, reference_stats: str | None, save_reference_stats: str | None,
                 classifier: str | None, labelled=None):
        super().__init__(model, recipe)
        self.labelled, self.probe_result = labelled, None
        from mmtok.metrics import load_stats_meta

        spec = self.spec
        self.trained = int(spec.input_size[-1])
        self.res = res = int(resolution or self.trained)
        f = spec.downsample
        if res % f:
            raise MmtokError(f"resolution {res} is not a multiple of the model's downsample factor {f}",
                             hint=f"use a multiple of {f} (the model was trained at {self.trained})")
        self.data, self.crop = data, CROP.format(r=res)
        self.pixels = bool(spec.get("pixels", True))  # a tokenizer without a pixel decoder (seed): no pixels
        if not self.pixels:
            if reference_stats or save_reference_stats:
                raise MmtokError("--reference-stats / --save-reference-stats: this tokenizer has no pixel decoder, "
                                 "so no rFID", hint="drop the flag")
            fid_path, fid_why = None, NO_PIXELS
            classifier = None
        self.rfid_asked, self.fid_path, self.fid_why, self.classifier = rfid, fid_path, fid_why, classifier
        self.reference_stats, self.save_reference_stats = reference_stats, save_reference_stats
        self.network = fid_protocol.network_identity(fid_path) if fid_path else None
        self.ref_meta = None
        if reference_stats:  # fid_path is set: _find_fid refused otherwise
            self.ref_meta = load_stats_meta(reference_stats)
            self.warnings += fid_protocol.check_reference(reference_stats, self.ref_meta, data=data, split=SPLIT,
                                                          resolution=res, crop=self.crop, network=self.network)
        self.fid = _make_fid(fid_path, reference_stats)  # before the launch: an unreadable network stops everything
        self.grid_in, self.grid_out = [], []
        self.by_scales = None  # mmtok.modalities.image.scales.ScaleMetrics for a multi-scale tokenizer

    @property
    def data_spec(self) -> int:
        return self.res

    def model_info(self) -> dict:
        return {"resolution_trained": self.trained}

    def setup(self, device, *, console, is_main: bool, world: int) -> None:
        from mmtok.metrics import SSIM
        from mmtok.modalities.image.objective import ImageMetrics

        self.is_main, self.device, self.console = is_main, device, console
        if self.fid_path is None:
            self.unavailable["rfid"] = self.fid_why
            if is_main and self.rfid_asked:
                from rich.markup import escape

                console.print(f"[yellow]rFID unavailable[/yellow]: {escape(self.fid_why)}", soft_wrap=True)
        lpips = {net: _make_lpips(net, self.res, self.unavailable) if self.pixels else None for net in ("vgg", "alex")}
        # the validation suite (PSNR on 8-bit levels, l2): the same numbers training reports
        metrics = {"suite": ImageMetrics(self.spec.codebook_size, self.spec.num_codebooks)}
        if not self.pixels:
            self.unavailable.update({"psnr": NO_PIXELS, "ssim": NO_PIXELS, "lpips_vgg": NO_PIXELS,
                                     "lpips_alex": NO_PIXELS})
        elif self.res >= 11:
            metrics["ssim"] = SSIM()
        else:
            self.unavailable["ssim"] = f"SSIM's 11x11 window needs images of at least 11 px (evaluating at {self.res} px)"
        if self.fid is not None:
            metrics["fid"] = self.fid
        metrics.update({f"lpips_{net}": m for net, m in lpips.items() if m is not None})
        metrics.update(_semantic_metrics(self.model, self.classifier, self.unavailable))
        self.suite = {name: m.to(device) for name, m in metrics.items()}
        from mmtok.modalities.image.scales import ScaleMetrics, has_scales

        if self.pixels and has_scales(self.model):
            self.by_scales = ScaleMetrics(self.model, device)

    def decode(self, ids):
        return self.model.decode(ids) if self.pixels else None

    def update(self, batch: dict, x, ids, recon) -> None:
        from mmtok.modalities.image.objective import to_8bit_levels

        m = self.suite
        if self.pixels:
            recon = to_8bit_levels(recon)  # the one PSNR protocol, shared with validation
            _update(m, x, recon, ids, fid_real=self.reference_stats is None, timed=self.timed)
        if "semantic_cosine" in m:
            with self.timed("metrics/semantic_cosine"):
                m["semantic_cosine"].update(self.model.teacher_features(x), self.model.semantic_embedding(ids))
        if self.by_scales is not None:
            with self.timed("metrics/scales"):
                self.by_scales.update(x, ids, keep_picture=self.is_main and not self.by_scales.picture)
        if self.pixels and self.is_main and sum(len(g) for g in self.grid_in) < GRID_IMAGES:
            self.grid_in.append(x[:GRID_IMAGES].cpu())
            self.grid_out.append(recon[:GRID_IMAGES].cpu())

    def metrics(self, num_samples: int) -> dict:
        m, unavailable = self.suite, self.unavailable
        results: dict = {}
        results["psnr"] = _value(m["suite"].psnr) if self.pixels else UNAVAILABLE
        if "ssim" in m:
            results["ssim"] = _value(m["ssim"])
        for net in ("vgg", "alex"):
            key = f"lpips_{net}"
            results[key] = _value(m[key]) if key in m else UNAVAILABLE
        for key in ("classifier_agreement", "semantic_cosine"):
            if key in m or key in unavailable:
                results[key] = _value(m[key]) if key in m else UNAVAILABLE
        rfid_extra: dict = {}
        fid, ref_meta = self.fid, self.ref_meta
        if fid is not None:
            try:
                results["rfid"] = float(fid.compute())
            except ValueError as e:  # fewer than 2 images on a side
                results["rfid"], unavailable["rfid"] = UNAVAILABLE, str(e)
            if "rfid" not in unavailable:
                n_fid = min(num_samples, int(ref_meta["num_images"])) if ref_meta else num_samples
                rfid_extra = {"rfid_num_images": n_fid, "rfid_reliability": fid_protocol.rfid_reliability(n_fid)}
                line = fid_protocol.rfid_warning(n_fid)
                self.warnings[:0] = [line] if line else []
                if ref_meta and fid_protocol.count_warning(self.reference_stats, ref_meta, num_samples):
                    self.warnings.append(fid_protocol.count_warning(self.reference_stats, ref_meta, num_samples))
                if self.save_reference_stats:
                    fid.save_reference_stats(self.save_reference_stats, meta=fid_protocol.describe(
                        data=self.data, split=SPLIT, num_images=num_samples, resolution=self.res, crop=self.crop,
                        network=self.network))
            elif self.save_reference_stats:
                self.warnings.append(f"--save-reference-stats: nothing written ({unavailable['rfid']})")
        else:
            results["rfid"] = UNAVAILABLE
        if self.labelled is not None and self.is_main:  # rank 0 alone: its features are all it keeps
            from mmtok.modalities.image.probe import run_probe

            with self.timed("probe"):
                self.probe_result = run_probe(self.model, self.labelled, resolution=self.res, device=self.device,
                                              console=self.console)
            for key in ("knn_top1", "linear_top1"):
                results[f"probe_{key}"] = self.probe_result["features"]["tokens"][key]
        if self.by_scales is not None:
            results["by_scales"] = self.by_scales.compute()
        return {"rfid": results.pop("rfid"), **rfid_extra, **results}

    def extra(self) -> dict:
        return {"probe": self.probe_result} if self.probe_result else {}

    def protocol(self) -> dict:
        return {
            "crop": self.crop, "resolution": self.res,
            "fid_weights": str(self.fid_path) if self.fid_path is not None else None, "fid_network": self.network,
            "fid_features": fid_protocol.FEATURES, "reference_stats": self.reference_stats,
            "reference_source": (self.ref_meta or {}).get("source"), "psnr_ssim": "images in [0, 1], data_range 1.0",
            "reconstructions": "Reconstructions clamped to [-1, 1] and quantised to 8 bits before every metric",
        }

    def write(self, out: Path, result: dict) -> dict[str, str]:
        import torch

        from mmtok.modalities.image.grid import save_grid

        if not self.grid_in:
            return {}
        save_grid(torch.cat(self.grid_in)[:GRID_IMAGES], torch.cat(self.grid_out)[:GRID_IMAGES],
                  out / "reconstructions.png")
        files = {"grid": "reconstructions.png"}
        if self.by_scales is not None and self.by_scales.write_picture(out / "scales.png"):
            files["scales"] = "scales.png"
        return files

    def report(self, result: dict) -> str:
        return report_markdown(result)


def report_markdown(result: dict) -> str:
    """report.md: model, protocol, metrics, what was unavailable and why, and the two pictures."""
    from mmtok.evaluation.report import metric_rows, timing_line

    model, proto, m = result["model"], result["protocol"], result["metrics"]
    lines = [
        f"# Evaluation of {model.get('recipe_name')} ({model.get('path')})",
        "",
        f"{proto['num_samples']} images of `{proto['data']}` ({proto['split']} split: {proto['crop']}), "
        f"{proto['resolution']}x{proto['resolution']}, {model['weights']} weights"
        + (f" (step {model['step']})" if model.get("step", -1) >= 0 else "")
        + f", mmtok {result['mmtok_version']}, seed {proto['seed']}, {proto['devices']} device(s) ({proto['device']}).",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in metric_rows(m)]
    lines.append("")
    if result.get("warnings"):
        lines += ["Warnings:", ""] + [f"- **{w}**" if w.startswith("rFID from") else f"- {w}"
                                      for w in result["warnings"]] + [""]
    if result.get("unavailable"):
        lines += ["Unavailable:", ""] + [f"- **{k}**: {why}" for k, why in result["unavailable"].items()] + [""]
    lines += [
        "rFID: Inception-v3 pool3 features of the cropped originals"
        + (f" (precomputed reference statistics {proto['reference_stats']}, of "
           f"`{(proto.get('reference_source') or {}).get('data')}`)" if proto.get("reference_stats") else "")
        + f" and of the reconstructions, float64 statistics ({proto.get('fid_weights') or 'weights unavailable'}). "
        f"PSNR and SSIM on [0, 1] images with data_range 1.0. {proto['reconstructions']}. "
        f"Throughput: {proto['throughput']}.",
        "",
        f"Time: {timing_line(result.get('timing'))}.",
        "",
    ]
    if model.get("note"):
        lines += [f"Note: {model['note']}", ""]
    if result.get("probe"):
        from mmtok.evaluation.report import probe_markdown

        lines += ["## What the tokens say about the class (probe)", ""] + probe_markdown(result["probe"]) + [""]
    if m.get("by_scales"):
        from mmtok.modalities.image.scales import scales_markdown

        lines += ["## Scale by scale (decoding from the first scales only)", ""] + scales_markdown(m["by_scales"]) + [""]
    files = result.get("files", {})
    if "scales" in files:
        lines += ["## Coarse to fine (originals, then the first 1, 2, ... scales)", "",
                  f"![scales]({files['scales']})", ""]
    if "grid" in files:
        lines += ["## Reconstructions (originals above, reconstructions below)", "",
                  f"![reconstructions]({files['grid']})", ""]
    if "usage_plot" in files:
        lines += ["## Codebook usage (code frequencies, sorted, log scale)", "",
                  f"![codebook usage]({files['usage_plot']})", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ helpers


def _find_fid(weights: str | None, *, wanted_by: str | None) -> tuple[Path | None, str]:
    """(the FID network's file, "") or (None, why it is unavailable). A file the caller named that is missing
    or unreadable is an error, and so is an unavailable network when `wanted_by` (a flag that needs rFID)."""
    from mmtok import assets

    try:
        path = assets.get("fid-inception").resolve(weights)
    except AssetError as e:
        if weights or wanted_by is None:
            if weights:
                raise AssetError(f"--fid-weights {weights}: no such file", hint=e.hint) from None
            return None, str(e)
        raise AssetError(f"{wanted_by} needs the FID network, which is not available: {e.message}",
                         hint=e.hint) from None
    return path, ""


def _make_fid(path: Path | None, reference_stats: str | None):
    """The rFID metric on the network at `path` (None: unavailable), with the reference statistics loaded.
    A file that is not a readable TorchScript network is an AssetError naming it."""
    from mmtok.metrics import FrechetInceptionDistance

    if path is None:
        return None
    fid = FrechetInceptionDistance(weights=path)
    if reference_stats:
        fid.load_reference_stats(reference_stats)
    return fid


def _make_lpips(net: str, res: int, unavailable: dict):
    import torch

    from mmtok.metrics import LPIPSMetric, lpips_available

    ok, reason = lpips_available(net)
    if not ok:
        unavailable[f"lpips_{net}"] = reason
        return None
    try:
        metric = LPIPSMetric(net)
    except AssetError as e:
        unavailable[f"lpips_{net}"] = str(e)
        return None
    try:  # the backbone's pooling stages need a minimum image size
        with torch.no_grad():
            metric.lpips(torch.zeros(1, 3, res, res), torch.zeros(1, 3, res, res))
    except RuntimeError:
        unavailable[f"lpips_{net}"] = f"the {net} backbone cannot run on {res}x{res} images (too small)"
        return None
    return metric


def _update(metrics: dict, x, recon, ids, *, fid_real: bool, timed) -> None:
    """Every pixel metric on one batch, each timed as "metrics/NAME" (`timed`: EvalPass.timed)."""
    from mmtok.contract import TokenizerOutput

    a, b = (x.float() + 1) / 2, (recon + 1) / 2
    with timed("metrics/psnr"):
        metrics["suite"].update(x, TokenizerOutput(recon=recon, ids=ids))
    if "ssim" in metrics:
        with timed("metrics/ssim"):
            metrics["ssim"].update(b, a)
    for key in ("lpips_vgg", "lpips_alex"):
        if key in metrics:
            with timed(f"metrics/{key}"):
                metrics[key].update(b, a)
    if "classifier_agreement" in metrics:
        with timed("metrics/classifier_agreement"):
            metrics["classifier_agreement"].update(x, recon)
    if "fid" in metrics:
        with timed("metrics/rfid"):
            if fid_real:
                metrics["fid"].update(x, real=True)
            metrics["fid"].update(recon, real=False)


def _semantic_metrics(model, classifier: str | None, unavailable: dict) -> dict:
    """{"classifier_agreement": ..., "semantic_cosine": ...} for what this model and machine allow; the reason
    for anything asked for but unavailable goes into `unavailable`."""
    from mmtok.metrics.semantic import ClassifierAgreement, SemanticCosine

    out = {}
    if classifier:
        from mmtok.teachers import load_classifier

        try:
            out["classifier_agreement"] = ClassifierAgreement(load_classifier(classifier))
        except MmtokError as e:  # missing weights (or the package that ships them): the rest still runs
            unavailable["classifier_agreement"] = e.message
    if hasattr(model, "teacher_features") and hasattr(model, "semantic_embedding"):
        out["semantic_cosine"] = SemanticCosine()
    return out


def _value(metric) -> float:
    return float(metric.compute())
