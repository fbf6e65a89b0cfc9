"""A 5x7 dot-matrix font for the glyphs on Scenette's signs.

Drawn here instead of taken from a font file, so the rendered pixels do not depend on the Pillow or
FreeType version. Letters that look like digits at this size (O, I, S, B, Z) are left out.
"""

from __future__ import annotations

import numpy as np

_ROWS = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
}

GLYPHS: tuple[str, ...] = tuple(_ROWS)
GLYPH_ROWS, GLYPH_COLS = 7, 5


def bitmap(glyph: str, scale: int = 1) -> np.ndarray:
    """The glyph as a bool array [7*scale, 5*scale] (True = ink)."""
    if glyph not in _ROWS:
        raise ValueError(f"unknown glyph {glyph!r}; allowed: {''.join(GLYPHS)}")
    cells = np.array([[c == "#" for c in row] for row in _ROWS[glyph].split()], dtype=bool)
    return np.kron(cells, np.ones((scale, scale), dtype=bool))
