"""The audio modality: waveforms float32 [B, C, T] in [-1, 1] at the model's sample rate, under the batch key "audio".

Importing this package registers the data sources "audio/demo", "audio/folder" and "audio/shards"
(mmtok.data.audio_sources). Its parts: the objective, validation suite and sample writer of audio codecs
(objective.py), `mmtok eval` on audio (evaluate.py), what `mmtok.load` returns for an audio bundle and its
tokenizer.json keys (tokenizer.py), the bundle's model card (card.py) and `mmtok data pack` for folders of
audio (mmtok.data.audio_pack).
"""
from __future__ import annotations

from mmtok.data import audio_sources
from mmtok.data.sources import DATA_SOURCES
from mmtok.modalities import Modality

for _kind, _builder in (("demo", audio_sources.audio_demo), ("folder", audio_sources.audio_folder),
                        ("shards", audio_sources.audio_shards)):
    if f"audio/{_kind}" not in DATA_SOURCES:
        DATA_SOURCES.register(f"audio/{_kind}", _builder)

MODALITY = Modality(
    name="audio",
    evaluate="mmtok.modalities.audio.evaluate:evaluate",
    tokenizer="mmtok.modalities.audio.tokenizer:AudioTokenizer",
    bundle_meta="mmtok.modalities.audio.tokenizer:bundle_meta",
    card="mmtok.modalities.audio.card:model_card",
    lm_prefix="aud",
    pack="mmtok.data.audio_pack:pack_audio_folder",
)
