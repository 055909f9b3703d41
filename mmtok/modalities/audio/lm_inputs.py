"""The audio modality's reader for the LM stage (`mmtok tokenize`, mmtok.lm.inputs): a folder (recursive, sorted;
the transcript a manifest row or NAME.txt beside a file, mmtok.data.captions) or webdataset shards (a sample's audio
entry; its "txt" entry, or json caption / text). A clip is decoded, mixed, resampled and loudness-normalised as in
training and cut into consecutive pieces of the bundle's input length, keyed "NAME#k"; a trailing short piece is
dropped, a clip shorter than one piece gives one zero-padded piece (as in the audio modality's validation). With
`whole` (`mmtok tokenize --whole`), each clip up to that many seconds is one sample keyed NAME, so an utterance and
its transcript line up. A folder's pieces are counted from the file headers and a file is decoded only when one of
its pieces is loaded, so a resumed run or another rank does not decode the files of shards it does not write.
"""
from __future__ import annotations

import itertools
from functools import partial
from typing import Callable, Iterator

from mmtok.errors import DataError
from mmtok.lm.inputs import Input, InputError, failing


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

    def whole(self, seconds: float):
        """The whole prepared clip, float32 [C, T]; InputError when it is longer than `seconds`."""
        wave = self._prepared()
        length = wave.shape[1] / self.spec.sample_rate
        if length > seconds + 1e-9:
            raise InputError(f"{length:.2f} s, longer than the {seconds:g} s that --whole keeps whole")
        return wave.copy()

    def piece(self, k: int):
        from mmtok.modalities.audio.decode import fixed_segment

        return fixed_segment(self._prepared(), self.spec.segment, k).copy()  # float32 [C, segment]


def read_inputs(tok, source: str, kind: str, whole: float | None = None) -> Iterator[Input]:
    """The clips of `source` cut into pieces "NAME#k" (module docstring), or with `whole` (seconds) one sample per
    clip keyed NAME: the prepared clip zero-padded to a whole frame (the tokenizer pads to its hop), a clip longer than
    `whole` seconds an unusable item."""
    from mmtok.data.captions import FolderCaptions
    from mmtok.data.holdout import relative_name
    from mmtok.lm.captioned import shard_items
    from mmtok.modalities.audio.decode import (
        AUDIO_KEYS,
        AudioSpec,
        audio_frames,
        decode_audio,
        find_audio,
        read_audio,
        segment_count,
    )

    spec = AudioSpec(tok.sample_rate, tok.channels, int(tok.meta["input_size"][-1]),
                     tok.config["model"].get("loudness_lufs"))
    index = itertools.count()
    if kind == "folder":
        files = find_audio(source)
        if not files:
            raise DataError(f"no audio files in folder {source}",
                            hint="put .wav/.flac/.ogg/.mp3 files in it (searched recursively)")
        captions = FolderCaptions(source, files)
        for path in files:
            name = relative_name(path, source)
            caption = captions.get(path)
            info = audio_frames(path)  # None: an unreadable header; decoding names the problem
            clip = _Clip(partial(read_audio, path), spec)
            if whole is not None:
                yield Input(next(index), name, caption, partial(clip.whole, whole))
                continue
            n = 1 if info is None else segment_count(int(info[0] * spec.sample_rate / info[1]), spec.segment)
            for k in range(n):
                yield Input(next(index), f"{name}#{k}", caption, partial(clip.piece, k))
        return
    for item in shard_items(source, AUDIO_KEYS, "audio"):
        clip = _Clip(partial(decode_audio, item.data), spec)
        if whole is not None:
            load = failing(item.error) if item.error else partial(clip.whole, whole)
            yield Input(next(index), item.key, item.caption, load)
            continue
        try:
            if item.error:
                raise InputError(item.error)
            n = clip.pieces()  # the bytes are in memory already: decoded now to count the pieces
        except InputError as e:
            yield Input(next(index), item.key, item.caption, failing(e.reason))
            continue
        for k in range(n):
            yield Input(next(index), f"{item.key}#{k}", item.caption, partial(clip.piece, k))
