"""The input samples of `mmtok tokenize` (mmtok.lm.tokens) for a bundle of any modality, in a fixed order.

    for item in read_inputs(tok, "data/"):        # tok = mmtok.load(bundle)
        value = item.load()                         # one element of tok.encode([...]); InputError when unusable

Every item has `index` (its position in the input: 0, 1, 2, ..., the same in every run, so a resumed run knows
which samples a finished shard holds), `key`, `caption`, and `dropped` / `bad` (input the source dropped just
before it, with "NAME: REASON"; the readers here make every unusable input an item whose `load()` raises
InputError instead, so these stay 0 / []).

- image: mmtok.lm.captioned (a folder with name.txt captions, or webdataset shards); `load()` decodes the image
  (mmtok.modalities.image.decode.decode_image, both sides at least the bundle's resolution).
- audio: the audio modality's readers (mmtok.modalities.audio.decode): a folder (recursive, sorted; the transcript NAME.txt
  beside a file) or webdataset shards (a sample's audio entry; its "txt" entry, or json caption / text). A clip is
  decoded, mixed, resampled and loudness-normalised as in training and cut into consecutive pieces of the
  bundle's input length, keyed "NAME#k"; a trailing short piece is dropped, a clip shorter than one piece gives
  one zero-padded piece (as in the audio modality's validation). A folder's pieces are counted from the file
  headers and a file is decoded only when one of its pieces is loaded, so a resumed run or another rank does not
  decode the files of shards it does not write.
- motion: a folder of clips read by the motion modality's reader (mmtok.modalities.motion.sources.MotionStream: .npy features,
  .bvh, DeepMimic clips; finite runs only): consecutive windows of the bundle's input length from the start of
  each finite run, keyed "NAME#k" (a trailing short window dropped; a clip without one whole window is one
  unusable item). The caption is NAME.txt beside a .npy / .bvh clip (HumanML3D's texts: the first line up to its
  first "#"), else "". Every clip is read while listing (motion clips are small).

The "#k" of a piece's key is left out when the LM's held-out split hashes it (`clip_name`), so the pieces of one
clip are all held out or all trained on.
"""
from __future__ import annotations

import itertools
import re
import types
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

from mmtok.errors import DataError

NOT_A_FOLDER_HINT = "give a folder (or, for images and audio, webdataset shards such as 'data/train-{0..9}.tar')"


class InputError(Exception):
    """One input sample cannot be used: `reason` says why (it is skipped, counted and named)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Input:
    index: int
    key: str
    caption: str
    load: Callable[[], Any]
    dropped: int = 0
    bad: list[str] = field(default_factory=list)


def clip_name(key: str) -> str:
    """The clip a piece's key "NAME#k" comes from (a key without "#k" is its own clip)."""
    return re.sub(r"#\d+$", "", key)


def read_inputs(tok, source: str) -> Iterator[Input]:
    """The samples of `source` for the loaded bundle `tok`, in a fixed order (module docstring)."""
    from mmtok.data.sources import source_kind

    modality = tok.meta.get("modality")
    readers = {"image": _images, "audio": _audio, "motion": _motion}
    if modality not in readers:
        raise DataError(f"`mmtok tokenize` cannot read data for a {modality} bundle",
                        hint="tokenize with an image, audio or motion bundle")
    kind = source_kind(source)
    if kind == "demo" or (modality == "motion" and kind != "folder"):
        raise DataError(f"`mmtok tokenize` with a {modality} bundle cannot read {source!r}", hint=NOT_A_FOLDER_HINT)
    return readers[modality](tok, source, kind)


def _fails(reason: str):
    def load():
        raise InputError(reason)

    return load


# ------------------------------------------------------------------------------------------- images


def _images(tok, source: str, kind: str) -> Iterator[Input]:
    from mmtok.lm.captioned import iter_items

    for item in iter_items(source):
        yield Input(item.index, item.key, item.caption, partial(_image, item, tok.resolution))


def _image(item, size: int):
    from mmtok.modalities.image.decode import ImageDecodeError, decode_image

    try:
        return decode_image(item.read(), min_size=size)
    except ImageDecodeError as e:
        raise InputError(e.message) from None


# ------------------------------------------------------------------------------------------- audio


class _Clip:
    """One audio clip, decoded and prepared once (when first needed), cut into pieces of spec.segment samples."""

    def __init__(self, decode: Callable, spec):
        self.decode, self.spec = decode, spec
        self.wave, self.error = None, ""

    def _prepared(self):
        from mmtok.modalities.audio.decode import AudioDecodeError, prepare

        if self.wave is None and not self.error:
            try:
                self.wave = prepare(*self.decode(), self.spec)
            except AudioDecodeError as e:
                self.error = e.message
        if self.error:
            raise InputError(self.error)
        return self.wave

    def pieces(self) -> int:
        from mmtok.modalities.audio.decode import segment_count

        return segment_count(self._prepared().shape[1], self.spec.segment)

    def piece(self, k: int):
        from mmtok.modalities.audio.decode import fixed_segment

        return fixed_segment(self._prepared(), self.spec.segment, k).copy()  # float32 [C, segment]


def _audio(tok, source: str, kind: str) -> Iterator[Input]:
    from mmtok.modalities.audio.decode import (AUDIO_KEYS, AudioSpec, audio_frames, decode_audio, find_audio, read_audio,
                                  segment_count)
    from mmtok.data.stream import sidecar_caption
    from mmtok.data.holdout import relative_name
    from mmtok.lm.captioned import shard_items

    spec = AudioSpec(tok.sample_rate, tok.channels, int(tok.meta["input_size"][-1]),
                     tok.config["model"].get("loudness_lufs"))
    index = itertools.count()
    if kind == "folder":
        files = find_audio(source)
        if not files:
            raise DataError(f"no audio files in folder {source}",
                            hint="put .wav/.flac/.ogg/.mp3 files in it (searched recursively)")
        for path in files:
            name = relative_name(path, source)
            try:
                caption = sidecar_caption(path)
            except OSError as e:
                yield Input(next(index), name, "", _fails(f"cannot read its transcript: {e.strerror or e}"))
                continue
            info = audio_frames(path)  # None: an unreadable header; decoding names the problem
            n = 1 if info is None else segment_count(int(info[0] * spec.sample_rate / info[1]), spec.segment)
            clip = _Clip(partial(read_audio, path), spec)
            for k in range(n):
                yield Input(next(index), f"{name}#{k}", caption, partial(clip.piece, k))
        return
    for item in shard_items(source, AUDIO_KEYS, "audio"):
        clip = _Clip(partial(decode_audio, item.data), spec)
        try:
            if item.error:
                raise InputError(item.error)
            n = clip.pieces()  # the bytes are in memory already: decoded now to count the pieces
        except InputError as e:
            yield Input(next(index), item.key, item.caption, _fails(e.reason))
            continue
        for k in range(n):
            yield Input(next(index), f"{item.key}#{k}", item.caption, partial(clip.piece, k))


# ------------------------------------------------------------------------------------------- motion


def _motion(tok, source: str, kind: str) -> Iterator[Input]:
    from mmtok.modalities.motion.sources import MotionStream, check_folder
    from mmtok.modalities.motion.clips import find_clips

    window = int(tok.meta["input_size"][0])
    spec = types.SimpleNamespace(**{**tok.config["model"], "window": window, "mirror": False})
    files = [f for f in find_clips(source) if not _is_caption(Path(f))]
    if not files:
        raise DataError(f"no motion clips in folder {source}",
                        hint="put .npy feature files, .bvh files or DeepMimic .txt clips in it (searched recursively)")
    check_folder(source, files, spec)  # features of another width: one line before any work
    stream = MotionStream(files, "val", spec, root=source, source=source)
    index = itertools.count()
    for path in files:
        runs, reason = stream._load(path)  # the stream's own reader, uncached: [(first frame, features)], reason
        if not runs:
            yield Input(next(index), stream.name(path), "", _fails(reason))
            continue
        caption = _motion_caption(Path(path))
        k = 0
        for _, feats in runs:
            for start in range(0, len(feats) - window + 1, window):
                yield Input(next(index), f"{stream.name(path)}#{k}", caption, partial(feats[start:start + window].copy))
                k += 1


def _is_caption(path: Path) -> bool:
    """NAME.txt beside a NAME.npy / NAME.bvh clip is its caption, not a DeepMimic clip."""
    return path.suffix.lower() == ".txt" and any(path.with_suffix(s).is_file() for s in (".npy", ".bvh"))


def _motion_caption(path: Path) -> str:
    side = path.with_suffix(".txt")
    if path.suffix.lower() == ".txt" or not side.is_file():
        return ""
    lines = side.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[0].split("#")[0].strip() if lines else ""
