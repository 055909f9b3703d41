"""Where eval/photos.py's photographs-only selection (`python eval/photos.py OUT --photographs`) comes from: its
sources, with the files checked by eye that are not photographs (deny) or are photographs the few-colours rule would
drop (allow), and the scenes that share a group although their names and looks differ (SAME_SCENE).

Every candidate was looked at as a 256-pixel thumbnail. Kept after a look, as real photographs: opencv's
smarties.png (sweets on a white table, shadows and all: not a cut-out), pca_test1.jpg (shapes on a light box),
licenseplate_motion.jpg (camera shake), graf1.png and graf3.png (a graffiti wall: a photograph of a painting, two
views of it).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    prefix: str                        # only files under this folder (inside `module`'s folder when that is set)
    skip_dirs: frozenset[str] = frozenset()
    deny: Collection[str] = frozenset()  # paths under prefix, checked by eye (a mapping gives each one's reason)
    module: str = ""                   # a Python package whose own files are the source, instead of `packages`
    allow: Mapping[str, str] = field(default_factory=dict)  # paths under prefix: photographs, whatever their colours


OPENCV = "/usr/share/doc/opencv-doc/examples/data/"
BACKGROUNDS = "/usr/share/backgrounds/"

PHOTOGRAPHS = (
    Source("opencv", ("opencv-doc",), OPENCV, deny={
        "WindowsLogo.jpg": "a logo (render)",
        "HappyFish.jpg": "a cartoon",
        "pic2.png": "synthetic rectangles of noise",
        "pic4.png": "synthetic rectangles on a pattern",
        "pic5.png": "a drawing of shapes",
        "starry_night.jpg": "a painting",
        "ela_modified.jpg": "an edited copy of ela_original.jpg (a pasted logo)",
        "ml.png": "a render (a robot)"}),
    Source("wallpapers", ("lomiri-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"), BACKGROUNDS,
           deny={
        "Fossa_by_Jasper_Roks.jpg": "abstract art (curved colour planes)",
        "Painting-Colors_by__herobrine7gamer.jpg": "abstract art (colour stripes)",
        "umang_by_Abhishek_Mudgal.jpg": "abstract art (colour gradients)",
        "Infinite-Sea_by_Aury88.jpg": "a composite (the Milky Way on a faceted gradient over rendered water)",
        "analogpattern_by_Peter_Nerlich.jpg": "abstract art (a texture under a colour-gradient overlay)",
        "warty-final-ubuntu.png": "abstract art (a faceted gradient)",
        "lomiri-default-background.png": "a link to warty-final-ubuntu.png"}),
    Source("mate", ("mate-backgrounds",), BACKGROUNDS + "mate/nature/", allow={  # all 12 are photographs
        "Blinds.jpg": "a leaf against the light (156 colours)",
        "Storm.jpg": "a storm over a road (223 colours)",
        "Wood.jpg": "grey planks (62 colours)"}),
    Source("sklearn", (), "datasets/images/", module="sklearn"),  # china.jpg, flower.jpg: photographs
)

# group key -> the key of the group it joins: one scene, though neither the name key nor the look says so.
SAME_SCENE = {"orange": "apple"}  # opencv's apple.jpg and orange.jpg: one set (cloth, pencil), shot to be blended
