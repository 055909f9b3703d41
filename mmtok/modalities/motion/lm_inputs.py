"""The motion modality's reader for the LM stage (`mmtok tokenize`, mmtok.lm.inputs): a folder of clips read by
the motion stream's reader (mmtok.modalities.motion.sources.MotionStream: .npy features, .bvh, DeepMimic clips;
finite runs only): consecutive windows of the bundle's input length from the start of each finite run, keyed
"NAME#k" (a trailing short window dropped; a clip without one whole window is one unusable item); with `whole`
(`mmtok tokenize --whole`) each finite run up to that many seconds is one sample. The caption is
a manifest row (mmtok.data.captions), else NAME.txt beside a .npy / .bvh clip (HumanML3D's texts: the first line
up to its first "#"), else "". Every clip is
read while listing (motion clips are small).
"""
from __future__ import annotations

import itertools
import types
from functools import partial
from pathlib import Path
from typing import Iterator

from mmtok.errors import DataError
from mmtok.lm.inputs import Input, failing


def read_inputs(tok, source: str, kind: str, whole: float | None = None) -> Iterator[Input]:
    """Windows "NAME#k" of the clips of `source` (module docstring), or with `whole` (seconds) each finite run of a
    clip as one sample (keyed NAME, or NAME#k for the k-th run of a clip with non-finite gaps), cut to a multiple of
    the bundle's downsample factor; a run longer than `whole` seconds is an unusable item."""
    from mmtok.data.captions import FolderCaptions
    from mmtok.modalities.motion.clips import find_clips
    from mmtok.modalities.motion.sources import MotionStream, check_folder

    if kind != "folder":
        raise DataError(f"`mmtok tokenize` with a motion bundle cannot read {source!r}",
                        hint="give a folder of clips (.npy features, .bvh or DeepMimic .txt)")
    window = int(tok.meta["input_size"][0])
    spec = types.SimpleNamespace(**{**tok.config["model"], "window": window, "mirror": False})
    files = [f for f in find_clips(source) if not _is_caption(Path(f))]
    if not files:
        raise DataError(f"no motion clips in folder {source}",
                        hint="put .npy feature files, .bvh files or DeepMimic .txt clips in it (searched recursively)")
    check_folder(source, files, spec)  # features of another width: one line before any work
    stream = MotionStream(files, "val", spec, root=source, source=source)
    captions = FolderCaptions(source, files, read_sidecar=_motion_caption)
    index = itertools.count()
    for path in files:
        runs, reason = stream._load(path)  # the stream's own reader, uncached: [(first frame, features)], reason
        if not runs:
            yield Input(next(index), stream.name(path), "", failing(reason))
            continue
        caption = captions.get(path)
        if whole is not None:
            f = int(tok.downsample)
            for k, (_, feats) in enumerate(runs):
                key = stream.name(path) + (f"#{k}" if len(runs) > 1 else "")
                usable = feats[:len(feats) // f * f]
                seconds = len(usable) / float(tok.fps)
                load = (failing(f"{seconds:.2f} s, longer than the {whole:g} s that --whole keeps whole")
                        if seconds > whole + 1e-9 else partial(usable.copy))
                yield Input(next(index), key, caption, load)
            continue
        k = 0
        for _, feats in runs:
            for start in range(0, len(feats) - window + 1, window):
                yield Input(next(index), f"{stream.name(path)}#{k}", caption, partial(feats[start:start + window].copy))
                k += 1


def _is_caption(path: Path) -> bool:
    """NAME.txt beside a NAME.npy / NAME.bvh clip is its caption, not a DeepMimic clip."""
    return path.suffix.lower() == ".txt" and any(path.with_suffix(s).is_file() for s in (".npy", ".bvh"))


def _motion_caption(path) -> str:
    path = Path(path)
    side = path.with_suffix(".txt")
    if path.suffix.lower() == ".txt" or not side.is_file():
        return ""
    lines = side.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[0].split("#")[0].strip() if lines else ""
