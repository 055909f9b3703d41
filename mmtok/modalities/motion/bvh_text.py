"""BVH files as other tools write them, made readable by pybvh before it parses them (`normalise`).

pybvh is strict where exporters are not. Seen in public BVH files:

- a `Frames:` count off by one (or more) from the motion lines that follow: the data wins, with a note;
- joints with six channels (position + rotation, as Blender exports every joint): pybvh models position channels on
  the root only, so a non-root joint's position channels are dropped and its OFFSET becomes their first frame's
  values (they are its translation from the parent); a note says so, and says it when they move over time;
- a motion line that is not numbers, or has another count of numbers than the hierarchy's channels: one ClipError
  naming the line, in mmtok's words (not numpy's).

`normalise(text) -> (text pybvh accepts, notes)`; anything else is left to pybvh.
"""
from __future__ import annotations

import re

from mmtok.errors import DataError


class BVHTextError(DataError):
    """A BVH file whose text cannot be read (the motion modality names the file)."""


_POSITION = ("Xposition", "Yposition", "Zposition")


def normalise(text: str) -> tuple[str, list[str]]:
    lines = text.splitlines()
    motion = next((i for i, ln in enumerate(lines) if ln.strip().upper() == "MOTION"), None)
    if motion is None:
        raise BVHTextError("no MOTION section", hint="a BVH file has a HIERARCHY and then a MOTION section")
    header, notes = lines[:motion], []
    joints = _joints(header)  # [(name, is_root, channels line index, offset line index, channel names)]
    total = sum(len(j[4]) for j in joints)
    frames_at = next((i for i in range(motion + 1, len(lines)) if lines[i].strip().lower().startswith("frames:")), None)
    time_at = next((i for i in range(motion + 1, len(lines)) if lines[i].strip().lower().startswith("frame time:")),
                   None)
    if frames_at is None or time_at is None:
        raise BVHTextError("the MOTION section lacks 'Frames:' or 'Frame Time:'")
    rows = []
    for i in range(time_at + 1, len(lines)):
        if not lines[i].strip():
            continue
        try:
            values = [float(v) for v in lines[i].split()]
        except ValueError:
            bad = next(v for v in lines[i].split() if not _is_number(v))
            raise BVHTextError(f"line {i + 1} of the motion data holds {bad[:20]!r}, not a number",
                               hint="each motion line is one number per channel of the hierarchy") from None
        if len(values) != total:
            raise BVHTextError(f"line {i + 1} holds {len(values)} numbers; the hierarchy declares {total} channels",
                               hint="the file is truncated or its hierarchy does not match its motion data")
        rows.append(values)
    declared = _int_after(lines[frames_at])
    if declared != len(rows):
        notes.append(f"'Frames: {declared}' but {len(rows)} motion lines: the motion lines are used")
    drop, start = [], 0
    for name, is_root, channels_at, offset_at, names in joints:
        positions = [start + k for k, c in enumerate(names) if c in _POSITION]
        if not is_root and positions:
            order = [names[k - start] for k in positions]
            first = {c: rows[0][k] if rows else 0.0 for c, k in zip(order, positions)}
            moving = any(abs(r[k] - rows[0][k]) > 1e-6 for r in rows for k in positions)
            header[offset_at] = re.sub(r"OFFSET.*", "OFFSET " + " ".join(f"{first.get(c, 0.0):g}" for c in _POSITION),
                                       header[offset_at])
            kept = [c for c in names if c not in _POSITION]
            header[channels_at] = re.sub(r"CHANNELS.*", f"CHANNELS {len(kept)} " + " ".join(kept), header[channels_at])
            drop += positions
            notes.append(f"joint {name}: its position channels are kept as its offset (first frame)"
                         + ("; they move over time, and that translation is dropped" if moving else ""))
        start += len(names)
    if drop:
        gone = set(drop)
        rows = [[v for k, v in enumerate(r) if k not in gone] for r in rows]
    out = header + ["MOTION", f"Frames: {len(rows)}", lines[time_at].strip()]
    out += [" ".join(f"{v:g}" for v in r) for r in rows]
    return "\n".join(out) + "\n", notes


def _joints(header: list[str]):
    joints, current, offset_at = [], None, None
    for i, ln in enumerate(header):
        words = ln.split()
        if not words:
            continue
        if words[0] in ("ROOT", "JOINT"):
            current = (" ".join(words[1:]) or "?", words[0] == "ROOT")
            offset_at = None
        elif words[0] == "End":
            current = None
        elif words[0] == "OFFSET" and current is not None:
            offset_at = i
        elif words[0] == "CHANNELS" and current is not None:
            if offset_at is None:
                raise BVHTextError(f"joint {current[0]} has CHANNELS before its OFFSET (line {i + 1})")
            try:
                count = int(words[1])
            except (IndexError, ValueError):
                raise BVHTextError(f"line {i + 1}: CHANNELS without a count") from None
            names = words[2:]
            if len(names) != count:
                raise BVHTextError(f"line {i + 1}: CHANNELS {count} names {len(names)} channels")
            joints.append((current[0], current[1], i, offset_at, names))
    if not joints:
        raise BVHTextError("no joint with CHANNELS in the HIERARCHY")
    return joints


def _int_after(line: str) -> int | None:
    try:
        return int(line.split(":", 1)[1].strip())
    except (IndexError, ValueError):
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
