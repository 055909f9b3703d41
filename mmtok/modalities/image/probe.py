"""`mmtok eval --probe LABELLED` for image tokenizers: how much of an image's class its tokens carry.

LABELLED is a folder of class folders (LABELLED/CLASS/**/IMAGE: the class is the first folder's name) or webdataset
shards whose samples carry a class (a "cls" entry, else "class" / "label" / "cls" in their "json"). Each image is
cropped as `mmtok eval` crops it (shorter side resized to R, centre crop R x R), encoded, and described by features
computed from its ids only:

  tokens    the quantised code vectors of its ids (Tokenizer.code_vectors), mean-pooled over positions
  semantic  families with a semantic branch: semantic_embedding(ids), mean-pooled

and by two references computed from the same crops:

  pixels    the crop area-averaged to 16 x 16 (768 numbers): the floor any tokenizer should clear
  teacher   families with a frozen teacher: its global features of the crop (as the family feeds it): the ceiling

Every feature set goes through the same protocol (mmtok.evaluation.probe: 5-fold cross-validation over folds
chosen by a hash of the image keys, temperature-weighted cosine k-NN, a linear probe, chance). Keys are paths
relative to LABELLED ("cat/001.jpg") or shard sample keys, so every model probed on the same images gets the same
folds on every machine. Images stream
through in batches; only their features (a few thousand floats each) are kept.

Bad input: a folder without class folders or with fewer than two classes is one MmtokError before any work; an
empty class folder, images outside any class folder, samples without a class, undecodable files and classes with
fewer images than folds are skipped and named.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mmtok.errors import DataError, MmtokError

PIXEL_SIDE = 16
SHARD_HINT = "give samples a 'cls' entry (the class name or number), or a 'class' / 'label' key in their json"


@dataclass
class Labelled:
    """A labelled image set, listed (folders) or named (shards) before any work."""

    source: str
    items: list[tuple[str, str, str]] = field(default_factory=list)  # folder: (key, class, path)
    urls: list[str] = field(default_factory=list)  # shards
    skipped: list[str] = field(default_factory=list)  # "NAME: why", found while listing


def open_labelled(source: str) -> Labelled:
    """The labelled set `source` names: a folder of class folders, or a shard pattern; MmtokError for a folder
    with no class folder or fewer than two classes, DataError for shards that do not exist."""
    from mmtok.modalities.image.decode import IMAGE_SUFFIXES, find_images

    path = Path(source)
    if not path.is_dir():
        if path.suffix == ".tar" or any(c in source for c in "{*?[") or "://" in source or source.startswith("pipe:"):
            from mmtok.data.sources import expand_shards

            return Labelled(source, urls=expand_shards(source))
        raise DataError(f"--probe {source}: no such folder or shards",
                        hint="give a folder of class folders (CLASS/IMAGE) or shards whose samples carry 'cls'")
    out = Labelled(source)
    loose = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name.lower().endswith(IMAGE_SUFFIXES)]
    if loose:
        out.skipped.append(f"{source}: {len(loose)} image(s) outside any class folder")
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in classes:
        files = find_images(folder)
        if not files:
            out.skipped.append(f"{folder.name}/: no image files")
        out.items += [(f.relative_to(path).as_posix(), folder.name, str(f)) for f in files]
    named = sorted({c for _, c, _ in out.items})
    if len(named) < 2:
        what = f"one class ({named[0]})" if named else "no class folder with images"
        raise MmtokError(f"--probe {source}: {what}; a probe needs at least two classes",
                         hint="give a folder of class folders, one per class: LABELLED/CLASS/IMAGE")
    return out


def shard_class(sample: dict) -> str | None:
    """A webdataset sample's class: its "cls" entry, else "class" / "label" / "cls" of its "json", else None."""
    if "cls" in sample:
        value = sample["cls"]
        return (value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)).strip() or None
    if "json" in sample:
        try:
            data = json.loads(sample["json"])
        except ValueError:
            return None
        if isinstance(data, dict):
            for key in ("class", "label", "cls"):
                if data.get(key) is not None:
                    return str(data[key])
    return None


def _samples(labelled: Labelled, resolution: int):
    """An iterable dataset of {"key", "label", "image": uint8 [3, R, R]} or {"bad": "NAME: why"}, split over the
    loader's workers."""
    import torch

    from mmtok.modalities.image.decode import IMAGE_KEYS, ImageDecodeError, decode_image, image_to_uint8

    def crop(data: bytes):
        return image_to_uint8(decode_image(data, min_size=resolution), resolution, random_crop=False)

    class Samples(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            index, total = (info.id, info.num_workers) if info else (0, 1)
            if labelled.urls:
                yield from self._shards(index, total)
                return
            for key, label, path in labelled.items[index::total]:
                try:
                    yield {"key": key, "label": label, "image": crop(Path(path).read_bytes())}
                except (OSError, ImageDecodeError) as e:
                    yield {"bad": f"{key}: {e.message if isinstance(e, ImageDecodeError) else e.strerror or e}"}

        def _shards(self, index: int, total: int):
            import webdataset as wds

            for url in labelled.urls[index::total]:
                try:
                    for sample in wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples()):
                        yield self._sample(sample, url)
                except Exception as e:  # a tar that cannot be opened or read: named, the rest goes on
                    yield {"bad": f"{url}: unreadable shard data ({type(e).__name__})"}

        def _sample(self, sample: dict, url: str) -> dict:
            name = f"{sample.get('__key__')} in {url}"
            label, entry = shard_class(sample), next((k for k in IMAGE_KEYS if k in sample), None)
            if label is None or entry is None:
                return {"bad": f"{name}: no {'class' if label is None else 'image entry'}"}
            try:
                return {"key": str(sample["__key__"]), "label": label, "image": crop(sample[entry])}
            except ImageDecodeError as e:
                return {"bad": f"{name}: {e.message}"}

    return Samples()


def _collate(samples: list[dict]) -> dict:
    import torch

    good = [s for s in samples if "bad" not in s]
    return {"image": torch.stack([s["image"] for s in good]) if good else None,
            "key": [s["key"] for s in good], "label": [s["label"] for s in good],
            "bad": [s["bad"] for s in samples if "bad" in s]}


def features(model, x) -> dict:
    """{name: float32 [B, D]} for images x [B, 3, R, R] in [-1, 1]: tokens, semantic, pixels, teacher (module
    docstring; the last two are references, not from the ids)."""
    import torch.nn.functional as F

    ids = model.encode(x)
    out = {"tokens": model.code_vectors(ids).float().mean(1)}
    if hasattr(model, "semantic_embedding"):
        out["semantic"] = model.semantic_embedding(ids).float().mean(1)
    out["pixels"] = F.adaptive_avg_pool2d(x.float(), PIXEL_SIDE).flatten(1)
    if getattr(model, "teacher", None) is not None:
        out["teacher"] = model.teacher(x).global_.float()
    return out


def run_probe(model, labelled: Labelled, *, resolution: int, device, batch_size: int = 64, num_workers: int = 2,
              console=None) -> dict:
    """Probe `model` (on `device`) on `labelled`; the "probe" block of metrics.json (see `describe` for its keys)."""
    import numpy as np
    import torch

    from mmtok.evaluation.probe import FOLDS, probe
    from mmtok.evaluation.timing import progress_bar

    loader = torch.utils.data.DataLoader(_samples(labelled, resolution), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_collate)
    feats: dict[str, list] = {}
    keys, labels, skipped = [], [], list(labelled.skipped)
    total = len(labelled.items) or None
    with progress_bar(console, total, 1, enabled=console is not None, unit="images (probe)") as bar, torch.no_grad():
        task = bar.add_task("probe", total=total)
        for batch in loader:
            skipped += batch["bad"]
            if batch["image"] is not None:
                x = batch["image"].to(device).float().div_(127.5).sub_(1.0)
                for name, value in features(model, x).items():
                    feats.setdefault(name, []).append(value.cpu().numpy())
                keys += batch["key"]
                labels += batch["label"]
            bar.advance(task, len(batch["key"]) + len(batch["bad"]))
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    small = {c: n for c, n in counts.items() if n < FOLDS}
    skipped += [f"class {c}: {n} image(s), fewer than the {FOLDS} folds" for c, n in small.items()]
    kept = [i for i, c in enumerate(labels) if c not in small]
    classes = sorted(c for c in counts if c not in small)
    if len(classes) < 2:
        raise MmtokError(f"--probe {labelled.source}: {len(classes)} class(es) with at least {FOLDS} readable "
                         f"images ({len(keys)} images read, {len(skipped)} problem(s): {'; '.join(skipped)[:300]})",
                         hint="a probe needs at least two classes with several images each")
    if len(set(keys)) != len(keys):
        raise MmtokError(f"--probe {labelled.source}: the same key names two images",
                         hint="give every sample a distinct __key__ (the split is chosen by key)")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[labels[i]] for i in kept])
    kept_keys = [keys[i] for i in kept]
    results = {}
    for name, parts in feats.items():
        x = np.concatenate(parts)[kept]
        try:
            r = probe(x, y, kept_keys)
        except ValueError as e:
            raise MmtokError(f"--probe {labelled.source}: {e}", hint="give more images per class") from None
        results[name] = {"dim": int(x.shape[1]), "knn_top1": r["knn_top1"], "linear_top1": r["linear_top1"],
                         "linear_c": r["linear_c"]}
    spec = model.spec
    unavailable = {} if "teacher" in results else {"teacher": "this tokenizer has no frozen teacher"}
    if "semantic" not in results:
        unavailable["semantic"] = "this tokenizer has no semantic branch"
    return {
        "data": labelled.source, "images": len(kept), "classes": {c: counts[c] for c in classes},
        "folds": FOLDS, "chance": r["chance"],
        "bits_per_image": spec.ids_per_sample * math.log2(spec.codebook_size),
        "features": results, "unavailable": unavailable, "skipped": skipped,
        "protocol": describe(resolution),
    }


def describe(resolution: int) -> str:
    from mmtok.evaluation.probe import FOLDS, SALT, TEMPERATURE, K

    return (f"centre crops at {resolution}px; features: the token code vectors (and the semantic embedding) of the "
            f"ids, mean-pooled; pixels area-averaged to {PIXEL_SIDE}x{PIXEL_SIDE}; the teacher's global features. "
            f"{FOLDS}-fold cross-validation, an image's fold = floor({FOLDS} u), u = sha256('{SALT}:KEY') as a "
            f"fraction of 2^64; top-1 over all images, each tested once; chance = the most frequent class's share; k-NN: "
            f"cosine, k={K}, votes exp(s/{TEMPERATURE}); linear: standardised multinomial logistic regression, C "
            "chosen on an inner hash split of each training part")
