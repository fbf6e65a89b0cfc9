"""Scenette scenes: sampling from a seed and rendering to pixels (numpy only, deterministic).

A scene is 1-6 flat-coloured shapes of three size classes on a textured background, plus one
small sign carrying a dot-matrix digit or letter. Things sit on the 14-px cell grid of the image
(LLaVA-1.5's patch grid at 336 px, 24 x 24 cells): a small shape fills about one cell, a medium one
2 x 2, a large one 3 x 3 or 4 x 4 (each a few pixels smaller than its block, at a random offset
inside it), and the sign is exactly one cell; at least one free cell separates any two things.
So a small shape or the glyph lives in a single visual token, as small text often does in real
images, and a ViT trained from scratch for minutes can learn to recognise them (with arbitrary
sub-patch offsets it learned neither shapes nor glyphs within our CPU budget).

`sample_scene` draws a scene from an integer seed; `render` turns it into an RGB image and a
per-pixel label map (which object, which sign, or background) that vision pretraining uses.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from .glyphs import GLYPH_COLS, GLYPHS, bitmap

IMAGE_SIZE = 336
CELL = 14  # pixels per grid cell (= LLaVA-1.5's patch at 336 px)
GLYPH_SCALE = 2  # pixels per font dot: a 10 x 14 px glyph on a one-cell sign

# Names and reference RGB of the object colours. The weights make some colours and shapes more
# frequent than others, so "popular" POPE-style negatives mean something (as in COCO).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 210, 30),
    "purple": (135, 55, 185),
    "orange": (245, 130, 25),
}
COLOUR_WEIGHTS = (0.24, 0.20, 0.17, 0.14, 0.13, 0.12)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
SHAPE_WEIGHTS = (0.24, 0.20, 0.17, 0.14, 0.13, 0.12)
# Block side in cells per size class (large: 3 or 4), and how often each class is drawn.
SIZE_CLASSES = {"small": (1, 1), "medium": (2, 2), "large": (3, 4)}
SIZE_WEIGHTS = (0.4, 0.35, 0.25)
MAX_SHRINK = 3  # an object is up to this many pixels smaller than its block
MAX_OBJECTS = 6
BACKGROUND_LABEL = -1  # label-map values: objects 0..n-1, background -1, signs -2, -3, ...
SIGN_LABEL = -2


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: int
    x: int  # left edge of the bounding box
    y: int  # top edge
    rgb: tuple[int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.size / 2, self.y + self.size / 2


@dataclass(frozen=True)
class Sign:
    glyph: str
    x: int  # left edge of its cell
    y: int  # top edge
    ink_offset: int  # pixels from the cell's left edge to the glyph
    plate_rgb: tuple[int, int, int]
    ink_rgb: tuple[int, int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive end."""
        return self.x, self.y, self.x + CELL, self.y + CELL


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[SceneObject, ...]
    signs: tuple[Sign, ...]  # benchmark scenes have one; vision pretraining asks for more
    texture_seed: int
    size: int = IMAGE_SIZE

    @property
    def sign(self) -> Sign:
        return self.signs[0]


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def _choice(rng: np.random.Generator, options, weights=None):
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def _place(rng, cells: int, free: np.ndarray) -> tuple[int, int] | None:
    """Top-left cell (row, col) of a free `cells` x `cells` block with a free cell around it; marks it taken."""
    grid = free.shape[0]
    for _ in range(200):
        row, col = (int(v) for v in rng.integers(0, grid - cells + 1, 2))
        if free[max(0, row - 1) : row + cells + 1, max(0, col - 1) : col + cells + 1].all():
            free[row : row + cells, col : col + cells] = False
            return row, col
    return None


def _sample_sign(rng, free: np.ndarray) -> Sign | None:
    spot = _place(rng, 1, free)
    ink_offset = int(rng.integers(0, CELL - GLYPH_COLS * GLYPH_SCALE + 1))
    plate = tuple(int(v) for v in rng.integers(215, 256, 3))
    ink = tuple(int(v) for v in rng.integers(0, 50, 3))
    glyph = _choice(rng, GLYPHS)
    return None if spot is None else Sign(glyph, spot[1] * CELL, spot[0] * CELL, ink_offset, plate, ink)


def sample_scene(seed: int, size: int = IMAGE_SIZE, signs: int = 1) -> Scene:
    """The scene of integer `seed` (same seed, same scene, on any machine), with `signs` signs."""
    rng = _rng(0x5CE7E, seed)
    free = np.ones((size // CELL, size // CELL), dtype=bool)
    placed = []
    for _ in range(signs):  # signs go first, so every scene has all of them
        sign = _sample_sign(rng, free)
        if sign is not None:
            placed.append(sign)

    count = int(rng.integers(1, MAX_OBJECTS + 1))
    drafts = []
    for _ in range(count):
        low, high = SIZE_CLASSES[_choice(rng, tuple(SIZE_CLASSES), SIZE_WEIGHTS)]
        drafts.append(
            (
                int(rng.integers(low, high + 1)),
                _choice(rng, SHAPES, SHAPE_WEIGHTS),
                _choice(rng, tuple(COLOURS), COLOUR_WEIGHTS),
            )
        )
    objects = []
    for cells, shape, colour in sorted(drafts, key=lambda d: -d[0]):  # big ones first: they are hardest to fit
        spot = _place(rng, cells, free)
        if spot is None:
            continue
        shrink = int(rng.integers(0, MAX_SHRINK + 1))
        dx, dy = (int(v) for v in rng.integers(0, shrink + 1, 2))
        jitter = rng.integers(-12, 13, 3)
        rgb = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[colour], jitter))
        objects.append(SceneObject(shape, colour, cells * CELL - shrink, spot[1] * CELL + dx, spot[0] * CELL + dy, rgb))
    order = rng.permutation(len(objects))  # object order carries no size information
    return Scene(seed, tuple(objects[i] for i in order), tuple(placed), int(rng.integers(0, 2**31)), size)


# ---------------------------------------------------------------------------------------------
# rendering

_SUPERSAMPLE = 3


def _polygon_inside(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised over points."""
    inside = np.zeros(u.shape, dtype=bool)
    xs, ys = vertices[:, 0], vertices[:, 1]
    for i in range(len(vertices)):
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_at)
    return inside


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles) + 0.1], axis=1)


_POLYGONS = {
    "triangle": np.array([[0.0, -0.95], [1.0, 0.85], [-1.0, 0.85]]),
    "diamond": np.array([[0.0, -1.0], [0.72, 0.0], [0.0, 1.0], [-0.72, 0.0]]),
    "star": _star(),
}


def shape_coverage(shape: str, side: int) -> np.ndarray:
    """Fraction of each pixel of a side x side box that the shape covers (anti-aliased)."""
    n = side * _SUPERSAMPLE
    t = (np.arange(n) + 0.5) / n * 2 - 1  # sample centres in [-1, 1]
    v, u = np.meshgrid(t, t, indexing="ij")
    if shape == "circle":
        inside = u * u + v * v <= 1.0
    elif shape == "square":
        inside = (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    elif shape == "cross":
        inside = ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    elif shape in _POLYGONS:
        inside = _polygon_inside(u, v, _POLYGONS[shape])
    else:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    return inside.reshape(side, _SUPERSAMPLE, side, _SUPERSAMPLE).mean(axis=(1, 3))


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a [k, k] grid to [size, size]."""
    k = grid.shape[0]
    pos = np.linspace(0, k - 1, size)
    i0 = np.minimum(np.floor(pos).astype(int), k - 2)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def background(texture_seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A muted, textured background [size, size, 3] float: smooth noise plus stripes or checks, and grain."""
    rng = _rng(0xB6, texture_seed)
    hue, saturation, value = rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.35, 0.85)
    base = np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255
    smooth = _upsample(rng.uniform(-1, 1, (int(rng.integers(4, 12)),) * 2), size)
    texture = rng.uniform(8, 30) * smooth
    y, x = np.mgrid[0:size, 0:size].astype(float)
    kind = int(rng.integers(0, 3))
    if kind == 0:  # stripes at a random angle
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(6, 40), rng.uniform(0, 2 * np.pi)
        texture = texture + rng.uniform(8, 25) * np.sin(
            2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase
        )
    elif kind == 1:  # checks
        cell = rng.uniform(10, 48)
        texture = texture + rng.uniform(8, 22) * np.where((np.floor(x / cell) + np.floor(y / cell)) % 2 == 0, 1.0, -1.0)
    tint = 1 + rng.uniform(-0.15, 0.15, 3)  # the texture is not perfectly grey
    grain = rng.uniform(-8, 8, (size, size, 3))
    return np.clip(base + texture[..., None] * tint + grain, 0, 255)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], labels int16 [H, W]): object index, SIGN_LABEL - sign index, or
    BACKGROUND_LABEL per pixel."""
    size = scene.size
    image = background(scene.texture_seed, size)
    labels = np.full((size, size), BACKGROUND_LABEL, dtype=np.int16)
    for index, obj in enumerate(scene.objects):
        alpha = shape_coverage(obj.shape, obj.size)[..., None]
        window = image[obj.y : obj.y + obj.size, obj.x : obj.x + obj.size]
        window[:] = window * (1 - alpha) + np.array(obj.rgb, dtype=float) * alpha
        labels[obj.y : obj.y + obj.size, obj.x : obj.x + obj.size][alpha[..., 0] >= 0.5] = index
    for index, sign in enumerate(scene.signs):
        x0, y0, x1, y1 = sign.box
        image[y0:y1, x0:x1] = sign.plate_rgb
        ink = bitmap(sign.glyph, GLYPH_SCALE)
        gx, gy = x0 + sign.ink_offset, y0 + (CELL - ink.shape[0]) // 2
        image[gy : gy + ink.shape[0], gx : gx + ink.shape[1]][ink] = sign.ink_rgb
        labels[y0:y1, x0:x1] = SIGN_LABEL - index
    return np.round(image).astype(np.uint8), labels


def render_image(scene: Scene):
    """The scene as a PIL image."""
    from PIL import Image

    return Image.fromarray(render(scene)[0])
