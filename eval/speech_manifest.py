"""Real speech with a transcript manifest, to try `mmtok tokenize --whole` and manifests on: the English and Dutch
spoken descriptions of Debian's tuxpaint-stamps-default (the audio demo's validation split, 133 clips recorded by
volunteers), linked into OUT/clips/ with OUT/metadata.csv (Hugging Face audiofolder style: file_name,text). The text
of NAME_desc[_xx].ogg is the stamp's NAME.txt in that language (its first line for English, the "xx.utf8=" line
for the others).

    python eval/speech_manifest.py /tmp/speech
    mmtok tokenize bundles/audio --data /tmp/speech --out tokens/speech --whole 10
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path


def transcript(clip: Path, language: str) -> str:
    text_file = clip.with_name(clip.name.split("_desc")[0] + ".txt")
    if not text_file.is_file():
        return ""
    lines = text_file.read_text(encoding="utf-8", errors="replace").splitlines()
    if language == "en":
        return lines[0].strip() if lines else ""
    prefix = f"{language}.utf8="
    return next((line[len(prefix):].strip() for line in lines if line.startswith(prefix)), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()

    from mmtok.modalities.audio.demo import demo_files, demo_root, language

    root = demo_root()
    rows = []
    for clip in demo_files("val"):
        rel = clip.relative_to(root)
        link = args.out / "clips" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(clip, link)
        rows.append((f"clips/{rel.as_posix()}", transcript(clip, language(clip))))
    with open(args.out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text"])
        writer.writerows(rows)
    with_text = sum(1 for _, t in rows if t)
    sys.stdout.write(f"{len(rows)} clips, {with_text} with a transcript -> {args.out}/metadata.csv\n")


if __name__ == "__main__":
    main()
