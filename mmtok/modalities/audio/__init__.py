"""The audio modality: waveforms float32 [B, C, T] in [-1, 1] at the model's sample rate, under the batch key "audio".

Its parts: reading and decoding (decode.py), the built-in demo speech (demo.py), streams over folders and shards
(stream.py, sources.py), `mmtok data pack` for folders of audio (pack.py), the objective, validation suite and
sample writer of audio codecs (objective.py, samples.py), `mmtok eval` on audio (evaluate.py), what `mmtok.load`
returns for an audio bundle and its tokenizer.json keys (tokenizer.py) and the bundle's model card (card.py).
"""
from __future__ import annotations

from mmtok.modalities import Modality

MODALITY = Modality(
    name="audio",
    sources={"demo": "mmtok.modalities.audio.sources:audio_demo",
             "folder": "mmtok.modalities.audio.sources:audio_folder",
             "shards": "mmtok.modalities.audio.sources:audio_shards"},
    evaluate="mmtok.modalities.audio.evaluate:evaluate",
    tokenizer="mmtok.modalities.audio.tokenizer:AudioTokenizer",
    bundle_meta="mmtok.modalities.audio.tokenizer:bundle_meta",
    card="mmtok.modalities.audio.card:model_card",
    lm_prefix="aud",
    lm_inputs="mmtok.modalities.audio.lm_inputs:read_inputs",
    pack="mmtok.modalities.audio.pack:pack_audio_folder",
    find_files="mmtok.modalities.audio.decode:find_audio",
)
