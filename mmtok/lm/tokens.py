"""Token shards: a dataset of any modality (and its captions) encoded once by a bundle, for LM training.

    tokenize("bundles/quickstart", "stamps/", "tokens/stamps")     # or webdataset shards 'data/train-*.tar'
    shards = TokenShards("tokens/stamps")                         # read lazily, shard by shard
    ts = read_tokens("tokens/stamps")                             # everything at once: ts.ids, ts.captions, ts.keys

A token directory holds:
  tokens.json           the bundle (path, checksum, token spec), the data source and the shard size
  shard-NNNNNN.npz      input samples [N * shard_size, (N + 1) * shard_size): "ids" uint32 [n, *token_grid(, levels)]
                        (codebook indices, no vocabulary offset; images [n, h, w], audio [n, frames, levels],
                        motion [n, t] or [n, t, levels]), "keys" and "captions" (unicode arrays), "index" int64 [n]
                        (position in the input), "skipped" (count) and "bad" ("NAME: REASON" each). With clips
                        kept whole (`whole_seconds` in tokens.json, `mmtok tokenize --whole`): "ids" holds the
                        rows one after another along time, [sum of lengths(, levels)], and "lengths" int64 [n]
  rank-R.json           written by rank R when it has finished: how many input samples there were
Every file is written to a temporary name and renamed, so a killed run leaves only finished shards; running the
same command again keeps them and redoes the rest. With RANK / WORLD_SIZE set, rank R takes shards N % WORLD == R.

Inputs are read in a fixed order by mmtok.lm.inputs (images: folders with name.txt captions or webdataset shards;
other modalities: the modality's own folder / shard sources, clips cut into pieces of the bundle's input size,
transcripts as captions). A sample that cannot be read or decoded is skipped and counted, as in training.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtok.errors import DataError
from mmtok.files import atomic_write

HEADER = "tokens.json"
FORMAT_VERSION = 1
SPEC_KEYS = ("family", "modality", "token_grid", "tokens_per_sample", "codebook_size", "num_codebooks", "layout")


# ------------------------------------------------------------------------------------------- writing


def _save_npz(path: Path, **arrays) -> None:
    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def shard_name(n: int) -> str:
    return f"shard-{n:06d}.npz"


def _header(bundle, checksum: str, meta: dict, source: str, shard_size: int, whole: float | None) -> dict:
    import mmtok

    return {"format_version": FORMAT_VERSION, "mmtok_version": mmtok.__version__, "bundle": str(bundle),
            "bundle_checksum": checksum, "spec": {k: meta.get(k) for k in SPEC_KEYS}, "source": str(source),
            "shard_size": shard_size, "whole_seconds": whole}


def _check_or_write_header(out: Path, header: dict) -> None:
    path = out / HEADER
    if path.is_file():
        old = json.loads(path.read_text())
        for key, what in (("bundle_checksum", "another bundle"), ("source", "other data"),
                          ("shard_size", "another --shard-size"), ("whole_seconds", "another --whole")):
            if old.get(key) != header[key]:
                raise DataError(f"{out} holds tokens of {what} ({key} {old.get(key)!r}, now {header[key]!r})",
                                hint="choose another --out, or delete it to start again")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(header, indent=2)))


def tokenize(bundle: str | os.PathLike, source: str, out: str | os.PathLike, *, shard_size: int = 1000,
             batch_size: int = 64, device: str = "cpu", rank: int | None = None, world: int | None = None,
             progress: bool = True, whole: float | None = None) -> dict:
    """Encode `source` with `bundle` (any modality) into token shards in `out` (module docstring); resumable.
    `whole` (seconds): audio and motion clips are kept whole up to that length, one variable-length row each.

    Returns {"samples" (inputs seen), "encoded" (this call), "kept" (finished shards found and kept),
    "skipped" (bad samples in all shards of this rank), "bad" (their "NAME: REASON"), "shards" (this rank's
    files), "seconds", "tokens_per_s", "modality"} for this rank."""
    import time

    import mmtok
    from mmtok.lm.inputs import read_inputs
    from mmtok.lm.layout import bundle_checksum

    if shard_size < 1 or batch_size < 1:
        raise DataError(f"bad settings: shard_size={shard_size}, batch_size={batch_size}", hint="both must be >= 1")
    if whole is not None and not whole > 0:
        raise DataError(f"--whole {whole}: the longest clip to keep whole must be a positive number of seconds",
                        hint="e.g. --whole 20")
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world is None else world
    out = Path(out)
    from mmtok.data.sources import source_kind

    source_kind(source)  # a source that names no data is one line, before the bundle is loaded
    tok = mmtok.load(bundle, device=device)
    header = _header(bundle, bundle_checksum(bundle), tok.meta, source, shard_size, whole)
    _check_or_write_header(out, header)
    for stale in out.glob("shard-*.npz.*.tmp"):  # this rank's shards left half-written by a killed run
        if int(stale.name[6:12]) % world == rank:
            stale.unlink(missing_ok=True)

    t0 = time.perf_counter()
    stats = {"samples": 0, "encoded": 0, "kept": 0, "tokens": 0, "shards": []}
    shard: _Shard | None = None
    current = -1
    with _Progress(progress and rank == 0) as advance:
        for item in read_inputs(tok, source, whole):
            stats["samples"] = item.index + 1
            n = item.index // shard_size
            if n != current:  # the first item of shard n
                if shard is not None:
                    stats["tokens"] += shard.finish(tok)
                current, shard = n, None
                if n % world == rank:
                    stats["shards"].append(shard_name(n))
                    if (out / shard_name(n)).is_file():
                        stats["kept"] += 1
                    else:
                        shard = _Shard(out / shard_name(n), variable=whole is not None)
            if shard is not None:
                shard.add(item, tok, batch_size)
                stats["encoded"] += 1
            advance()
        if shard is not None:
            stats["tokens"] += shard.finish(tok)
    if stats["samples"] == 0:
        raise DataError(f"no samples in {source}")
    atomic_write(out / f"rank-{rank}.json",
                  lambda tmp: tmp.write_text(json.dumps({"samples": stats["samples"], "world": world}, indent=2)))
    bad, skipped = [], 0
    for name in stats["shards"]:
        with np.load(out / name, allow_pickle=False) as z:
            bad += [str(b) for b in z["bad"]]
            skipped += int(z["skipped"])
    seconds = time.perf_counter() - t0
    return {**stats, "skipped": skipped, "bad": bad, "seconds": round(seconds, 2), "modality": tok.meta["modality"],
            "tokens_per_s": round(stats["tokens"] / seconds, 1) if stats["tokens"] else None, "out": str(out)}


class _Shard:
    """One output shard being filled: samples loaded as they come, encoded a batch at a time (`variable`: one at a
    time, each row as long as its clip)."""

    def __init__(self, path: Path, variable: bool = False):
        self.path, self.variable = path, variable
        self.ids: list[np.ndarray] = []
        self.keys: list[str] = []
        self.captions: list[str] = []
        self.index: list[int] = []
        self.bad: list[str] = []
        self.skipped = 0
        self.pending: list = []  # loaded values waiting for a batch

    def add(self, item, tok, batch_size: int) -> None:
        from mmtok.lm.inputs import InputError

        self.skipped += item.dropped  # input the source dropped before this sample
        self.bad += item.bad
        try:
            value = item.load()
        except InputError as e:
            self.bad.append(f"{item.key}: {e.reason}")
            self.skipped += 1
            return
        self.pending.append(value)
        self.keys.append(item.key)
        self.captions.append(item.caption)
        self.index.append(item.index)
        if len(self.pending) >= batch_size:
            self._encode(tok)

    def _encode(self, tok) -> None:
        if self.pending and self.variable:  # clips of different lengths: each encoded alone, no padding between
            for value in self.pending:
                ids = tok.encode([value]).cpu().numpy()[0]
                if ids.shape[1:] != tuple(tok.spec.ids_shape[1:]):
                    raise DataError(f"the bundle encoded a clip to ids of shape {ids.shape}, not [time, "
                                    f"{', '.join(map(str, tok.spec.ids_shape[1:]))}]", hint="report this")
                self.ids.append(ids.astype(np.uint32))
            self.pending = []
        if self.pending:
            ids = tok.encode(self.pending).cpu().numpy()
            want = tok.spec.ids_shape
            if ids.shape[1:] != want:
                raise DataError(f"the bundle encoded a sample to ids of shape {ids.shape[1:]}, not its token grid "
                                f"{want}", hint="report this: the data source should cut samples to the bundle's "
                                "input size")
            self.ids.append(ids.astype(np.uint32))
            self.pending = []

    def finish(self, tok) -> int:
        """Encode what is left and write the shard (atomically); returns the number of tokens in it."""
        self._encode(tok)
        rest = tuple(tok.spec.ids_shape[1:]) if self.variable else tuple(tok.spec.ids_shape)
        ids = np.concatenate(self.ids) if self.ids else np.zeros((0, *rest), np.uint32)
        extra = {"lengths": np.array([len(i) for i in self.ids], dtype=np.int64)} if self.variable else {}
        _save_npz(self.path, ids=ids, keys=np.array(self.keys, dtype=str), captions=np.array(self.captions, dtype=str),
                  index=np.array(self.index, dtype=np.int64), skipped=np.int64(self.skipped),
                  bad=np.array(self.bad, dtype=str), **extra)
        return int(ids.size)


class _Progress:
    """A rich progress bar over input samples (total unknown), or nothing."""

    def __init__(self, show: bool):
        self.show = show

    def __enter__(self):
        if not self.show:
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]tokenize"), TextColumn("{task.completed} samples"),
                            TimeElapsedColumn(), console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("tokenize", total=None)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.show:
            self.bar.stop()
        return False


# ------------------------------------------------------------------------------------------- reading back


@dataclass
class TokenSet:
    """A whole token directory in memory: `ids` uint32 [N, *grid(, levels)] (rows kept whole, `mmtok tokenize
    --whole`: a list of N arrays [length(, levels)]), `captions`, `keys` (N each),
    `header` (tokens.json), `skipped` (bad input samples), `bad` ("NAME: REASON" each)."""

    header: dict
    ids: np.ndarray
    captions: list[str]
    keys: list[str]
    skipped: int
    bad: list[str]

    @property
    def bundle_checksum(self) -> str:
        return self.header["bundle_checksum"]

    def __len__(self) -> int:
        return len(self.keys)


def read_header(directory: str | os.PathLike) -> dict:
    """tokens.json of a token directory; DataError when it is not one."""
    path = Path(directory) / HEADER
    if not path.is_file():
        raise DataError(f"{directory} holds no token shards ({HEADER} missing)",
                        hint="make them with `mmtok tokenize BUNDLE --data DATA --out DIR`")
    try:
        header = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path} is not valid JSON ({e})") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} has format {header.get('format_version')}; this mmtok reads {FORMAT_VERSION}",
                        hint="tokenize the data again with this mmtok")
    return header


class TokenShards:
    """A finished token directory, read lazily: `header`, `names` (shard files in input order), and per shard
    `keys(n)` (only the keys are read), `load(n)` ({"ids" uint32 [n, ...], "captions", "keys"}), `count(n)`.
    DataError when it is not a token directory or shards are missing (a run that has not finished)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.header = read_header(self.directory)
        ranks = sorted(self.directory.glob("rank-*.json"))
        if not ranks:
            raise DataError(f"tokenizing into {directory} has not finished", hint="run the same `mmtok tokenize` again")
        samples = json.loads(ranks[0].read_text())["samples"]
        self.names = [shard_name(n) for n in range(-(-samples // self.header["shard_size"]))]
        missing = [name for name in self.names if not (self.directory / name).is_file()]
        if missing:
            raise DataError(f"{directory} misses {len(missing)} of {len(self.names)} token shards (first: {missing[0]})",
                            hint="run the same `mmtok tokenize` again (every rank) to finish them")
        self._counts: dict[int, int] = {}

    @property
    def bundle_checksum(self) -> str:
        return self.header["bundle_checksum"]

    def __len__(self) -> int:
        """The number of shards."""
        return len(self.names)

    def _read(self, n: int, *fields: str) -> dict:
        path = self.directory / self.names[n]
        try:
            with np.load(path, allow_pickle=False) as z:
                return {f: z[f] for f in fields}
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"token shard {path} cannot be read ({type(e).__name__}: {e})",
                            hint="delete it and run the same `mmtok tokenize` again to redo it") from None

    def keys(self, n: int) -> list[str]:
        keys = [str(k) for k in self._read(n, "keys")["keys"]]
        self._counts[n] = len(keys)
        return keys

    def count(self, n: int) -> int:
        if n not in self._counts:
            self.keys(n)
        return self._counts[n]

    @property
    def variable(self) -> bool:
        """Rows of their clips' own lengths (`mmtok tokenize --whole`): `load` gives "ids" as a list of arrays."""
        return self.header.get("whole_seconds") is not None

    def load(self, n: int) -> dict:
        z = self._read(n, "ids", "captions", "keys", *(("lengths",) if self.variable else ()))
        ids = z["ids"].astype(np.uint32, copy=False)
        if self.variable:
            ids = np.split(ids, np.cumsum(z["lengths"])[:-1]) if len(z["lengths"]) else []
        return {"ids": ids, "captions": [str(c) for c in z["captions"]], "keys": [str(k) for k in z["keys"]]}

    def longest_codes(self) -> int:
        """The most codes one row holds, over every shard (fixed rows: the bundle's token grid)."""
        if not self.variable:
            return int(np.prod(self.header["spec"]["token_grid"])) * max(1, self.header["spec"]["num_codebooks"] or 1)
        longest = 0
        for n in range(len(self.names)):
            z = self._read(n, "ids", "lengths")
            per_step = int(np.prod(z["ids"].shape[1:]))
            longest = max(longest, int(z["lengths"].max(initial=0)) * per_step)
        return longest

    def skipped(self) -> tuple[int, list[str]]:
        """(bad input samples, their "NAME: REASON") over every shard."""
        total, bad = 0, []
        for n in range(len(self.names)):
            z = self._read(n, "skipped", "bad")
            total += int(z["skipped"])
            bad += [str(b) for b in z["bad"]]
        return total, bad


def read_tokens(directory: str | os.PathLike) -> TokenSet:
    """Every shard of a finished token directory at once (small data, tests; training streams TokenShards)."""
    shards = TokenShards(directory)
    parts = [shards.load(n) for n in range(len(shards))]
    skipped, bad = shards.skipped()
    ids = [i for p in parts for i in p["ids"]] if shards.variable else np.concatenate([p["ids"] for p in parts])
    return TokenSet(shards.header, ids,
                    [c for p in parts for c in p["captions"]], [k for p in parts for k in p["keys"]], skipped, bad)
