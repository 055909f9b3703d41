"""The caption or transcript of a file in a folder, in one place for every modality and command (`mmtok data pack`,
the training streams, `mmtok tokenize`): a row of a manifest at the top of the folder, else NAME.txt beside the file.

    captions = FolderCaptions("speech/", files)     # files: the folder's audio / image / motion files
    captions.get("speech/clips/a.wav")               # "the transcript" ("" when there is none)
    captions.describe()                              # "transcripts: 120 from metadata.csv, 3 from .txt files; ..."

Manifests are the .tsv, .csv and .jsonl files directly in the folder (not in its subfolders) that have a file column and
a text column, as datasets ship them: Common Voice's TSVs (path, sentence), Hugging Face audiofolder / imagefolder
metadata (file_name, and transcription / text / caption), NeMo's JSON lines (audio_filepath, text), LibriSpeech-style
CSVs (file, text), and LJSpeech's metadata.csv (no header: ID|text|normalised text; the second column is used). A
.tsv is tab-separated, a .csv comma-, pipe- or semicolon-separated (told from its first line), a .jsonl one JSON
object per line. Several manifests are all read (Common Voice's train.tsv, dev.tsv, ...): a file named by more than
one takes the first (manifests in name order) and is counted as a conflict when the texts differ.

A row names its file by a path relative to the folder (or to any subfolder: Common Voice's `clips/`), an absolute
path inside it, a file name, or a name without extension (LJSpeech's IDs); a name that fits several files is used
for none of them. Rows that name no file of the folder are counted, never an error: a manifest of a larger set is
fine. A file no row names takes NAME.txt beside it (UTF-8, stripped) when there is one.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

MANIFEST_SUFFIXES = (".tsv", ".csv", ".jsonl")
FILE_COLUMNS = ("file", "file_name", "filename", "path", "filepath", "audio", "audio_filepath", "audio_path", "wav",
                "image", "image_path", "clip", "name", "id")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "caption", "normalized_text", "raw_text")
SHOWN = 3


class FolderCaptions:
    """The captions of `files` under `root` (see the module docstring); `get(path)` is the text of one of them."""

    def __init__(self, root: str | os.PathLike, files: list, read_sidecar=None):
        """`read_sidecar(path) -> str`: how a file's sidecar text is read (default `sidecar`; motion reads
        HumanML3D's texts, the first line up to its first "#")."""
        self.root = Path(root)
        self.read_sidecar = read_sidecar or sidecar
        self.manifests: list[str] = []  # names of the manifests read
        self.not_manifests: list[str] = []  # "NAME: why" of top-level .tsv / .csv / .jsonl files that are not
        self.rows = 0
        self.unmatched: list[str] = []  # file names of rows that name no file (the first SHOWN)
        self.unmatched_count = 0
        self.conflicts = 0
        self.from_manifest = 0
        self._text: dict[str, str] = {}
        if self.root.is_dir():
            self._read_manifests([Path(f) for f in files])

    # ------------------------------------------------------------------------------------------- reading

    def get(self, path: str | os.PathLike) -> str:
        """The caption of `path`: its manifest row's text, else NAME.txt beside it, else ""."""
        text = self._text.get(os.path.normpath(str(path)))
        return text if text is not None else self.read_sidecar(path)

    def sidecars(self, files: list) -> list[Path]:
        """The NAME.txt files of `files` that are used (those a manifest row does not override)."""
        out = []
        for f in files:
            side = Path(f).with_suffix(".txt")
            if os.path.normpath(str(f)) not in self._text and side.is_file():
                out.append(side)
        return out

    def manifest_paths(self) -> list[Path]:
        return [self.root / name for name in self.manifests]

    def describe(self, label: str = "captions") -> str:
        """One line: where the captions came from, and rows that named no file ("" without a manifest)."""
        if not self.manifests and not self.not_manifests:
            return ""
        parts = []
        if self.manifests:
            parts.append(f"{label}: {self.from_manifest} file(s) named by {', '.join(self.manifests)} "
                         f"({self.rows} rows)")
        if self.unmatched_count:
            parts.append(f"{self.unmatched_count} row(s) name no file here (e.g. {', '.join(self.unmatched)})")
        if self.conflicts:
            parts.append(f"{self.conflicts} file(s) named twice with different texts (the first manifest's kept)")
        if self.not_manifests:
            parts.append(f"not read as manifests: {'; '.join(self.not_manifests[:SHOWN])}")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------------------- manifests

    def _read_manifests(self, files: list[Path]) -> None:
        candidates = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
                            and not p.name.startswith("."))
        if not candidates:
            return
        index = _index(self.root, files)
        for manifest in candidates:
            try:
                rows = _rows(manifest)
            except (OSError, ValueError) as e:
                self.not_manifests.append(f"{manifest.name}: {str(e).splitlines()[0][:100] if str(e) else e}")
                continue
            if rows is None:
                self.not_manifests.append(f"{manifest.name}: no file and text columns")
                continue
            self.manifests.append(manifest.name)
            for name, text in rows:
                self.rows += 1
                target = _lookup(index, self.root, name)
                if target is None:
                    self.unmatched_count += 1
                    if len(self.unmatched) < SHOWN:
                        self.unmatched.append(name)
                elif target in self._text:
                    self.conflicts += int(self._text[target] != text)
                else:
                    self._text[target] = text
        self.from_manifest = len(self._text)


def sidecar(path: str | os.PathLike) -> str:
    """NAME.txt beside `path` (UTF-8, stripped), or "" when there is none or it cannot be read."""
    side = Path(path).with_suffix(".txt")
    try:
        return side.read_text(encoding="utf-8", errors="replace").strip() if side.is_file() else ""
    except OSError:
        return ""


def _index(root: Path, files: list[Path]) -> dict[str, str | None]:
    """Every way a row may name a file -> the file (None: that name fits several files)."""
    index: dict[str, str | None] = {}

    def add(key: str, target: str) -> None:
        index[key] = target if index.get(key, target) == target else None

    for f in files:
        target = os.path.normpath(str(f))
        try:
            rel = Path(f).relative_to(root).as_posix()
        except ValueError:
            rel = Path(f).name
        parts = rel.split("/")
        for i in range(len(parts)):  # a/b/c.wav, b/c.wav, c.wav: relative to the folder or any subfolder
            tail = "/".join(parts[i:])
            add(tail, target)
            add(tail.rsplit(".", 1)[0], target)  # without its extension (LJSpeech's IDs)
    return index


def _lookup(index: dict, root: Path, name: str) -> str | None:
    name = name.strip().replace("\\", "/")
    if not name:
        return None
    if os.path.isabs(name):
        try:
            name = Path(os.path.normpath(name)).relative_to(root.resolve()).as_posix()
        except ValueError:
            try:
                name = Path(os.path.normpath(name)).relative_to(root).as_posix()
            except ValueError:
                return None
    while name.startswith("./"):
        name = name[2:]
    return index.get(name)


def _rows(path: Path) -> list[tuple[str, str]] | None:
    """(file, text) of every row of a manifest, None when it has no file and text columns."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line in text.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                return None
            file_key = next((k for k in FILE_COLUMNS if k in record), None)
            text_key = next((k for k in TEXT_COLUMNS if k in record), None)
            if file_key is None or text_key is None:
                return None
            rows.append((str(record[file_key]), str(record[text_key] or "").strip()))
        return rows
    first = text.split("\n", 1)[0]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else max("|,;", key=first.count)  # a tie: LJSpeech's "|"
    table = list(csv.reader(io.StringIO(text), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "|"
                            else csv.QUOTE_MINIMAL))
    table = [row for row in table if row]
    if not table:
        return None
    header = [h.strip().lower() for h in table[0]]
    file_col = next((header.index(k) for k in FILE_COLUMNS if k in header), None)
    text_col = next((header.index(k) for k in TEXT_COLUMNS if k in header), None)
    if file_col is not None and text_col is not None:
        return [(row[file_col], row[text_col].strip()) for row in table[1:] if len(row) > max(file_col, text_col)]
    if delimiter == "|" and file_col is None and all(2 <= len(row) <= 3 for row in table):
        return [(row[0], row[1].strip()) for row in table]  # LJSpeech: ID|text|normalised text, no header
    return None
