"""`demo` audio: real recorded speech that a registry package ships, for runs that need audio but have none.

The source is Debian's `tuxpaint-stamps-default` (GPL-2; `apt-get install tuxpaint-stamps-default`): every Tux
Paint stamp comes with a spoken description ("koala", "a red fire truck", ...) recorded by volunteers, in up to
13 languages, 44.1 kHz OGG/Vorbis, about 7,400 clips, 3.6 hours, median 1.1 s. No PyPI package ships more than a
few seconds of recorded speech (pyannote.audio: one 30 s clip; pysptk: one 2 s sentence), so the demo relies
on this package; everything else (folders, shards) needs no system package.

Splits are by language, so validation speech comes from speakers and words training never hears:
  train  Catalan, Romanian, Bulgarian, Spanish, Russian, Belarusian, Greek, Danish, Lithuanian, Malayalam
  val    English and Dutch (133 clips, 1.5 minutes)
French (928 clips, 21 minutes) is in neither split: it is kept for measuring a finished model on speech that
nothing in mmtok's development has used (`demo_files("reserved")`).
"""
from __future__ import annotations

import re
from pathlib import Path

from mmtok.errors import DataError

DEMO_PACKAGE = "tuxpaint-stamps-default"
DEMO_ROOTS = ("/usr/share/tuxpaint/stamps", "/usr/local/share/tuxpaint/stamps")
VAL_LANGUAGES = ("en", "nl")
RESERVED_LANGUAGES = ("fr",)
_DESC = re.compile(r"_desc(?:_([a-z]{2}))?\.ogg$")


def demo_root() -> Path:
    """The folder holding the Tux Paint stamps; DataError naming the package when it is not installed."""
    for root in DEMO_ROOTS:
        if Path(root).is_dir():
            return Path(root)
    raise DataError(f"the audio demo needs the Debian package {DEMO_PACKAGE} (recorded speech), which is not "
                    f"installed (looked in {', '.join(DEMO_ROOTS)})",
                    hint=f"apt-get install {DEMO_PACKAGE}, or give --data a folder of audio files or shards")


def language(path: str | Path) -> str:
    """The language of a stamp description clip: "xx" from NAME_desc_xx.ogg, "en" for NAME_desc.ogg."""
    m = _DESC.search(Path(path).name)
    return (m.group(1) or "en") if m else ""


def demo_files(split: str) -> list[Path]:
    """The spoken descriptions of `split` ("train", "val" or "reserved"), sorted."""
    from mmtok.modalities.audio.decode import find_audio

    root = demo_root()
    clips = [p for p in find_audio(root) if _DESC.search(p.name)]
    if split == "val":
        chosen = [p for p in clips if language(p) in VAL_LANGUAGES]
    elif split == "reserved":
        chosen = [p for p in clips if language(p) in RESERVED_LANGUAGES]
    else:
        chosen = [p for p in clips if language(p) not in VAL_LANGUAGES + RESERVED_LANGUAGES]
    if not chosen:
        raise DataError(f"no spoken descriptions of the {split} split under {root}",
                        hint=f"reinstall {DEMO_PACKAGE} (apt-get install --reinstall {DEMO_PACKAGE})")
    return chosen
