"""Stage 1 itself: the vision tower's pretraining heads, batches and loop (the command and the recipe: train_vision.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import transformers  # its classes load on first use, so `--help` stays fast
from torch import nn
from torch.nn import functional as F

from .glyphs import GLYPHS
from .model import CLIP_MEAN, CLIP_STD, PATCH_SIZE, Sizes, vision_config
from .scene import COLOURS, SHAPES, SIGN_LABEL, render, sample_scene
from .training import Log, run_loop, save_folder, train_scene_seeds

STAGE_OFFSET = 0
MIN_PIXELS = 16  # a patch belongs to the thing covering at least this many of its 196 pixels
COLOUR_NAMES, NUM_PAIRS = tuple(COLOURS), len(COLOURS) * len(SHAPES)
NO_COLOUR, NO_SHAPE, NO_GLYPH = len(COLOURS), len(SHAPES), len(GLYPHS)
COUNT_CLASSES = 6


def to_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images -> normalised [B, 3, H, W], as the CLIP image processor makes them."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def scene_targets(scene, labels: np.ndarray) -> dict[str, np.ndarray]:
    """[CLS] and per-patch targets of one rendered scene."""
    n, grid = len(scene.objects), labels.shape[0] // PATCH_SIZE
    blocks = labels.reshape(grid, PATCH_SIZE, grid, PATCH_SIZE).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    labels_present = list(range(n)) + [SIGN_LABEL - k for k in range(len(scene.signs))]
    counts = np.stack([(blocks == label).sum(1) for label in labels_present], 1)
    best, covered = counts.argmax(1), counts.max(1) >= MIN_PIXELS
    colour = np.full(grid * grid, NO_COLOUR)
    shape = np.full(grid * grid, NO_SHAPE)
    glyph = np.full(grid * grid, NO_GLYPH)
    centre = np.zeros(grid * grid, dtype=np.float32)
    presence = np.zeros(NUM_PAIRS, dtype=np.float32)
    for k, obj in enumerate(scene.objects):
        c, s = COLOUR_NAMES.index(obj.colour), SHAPES.index(obj.shape)
        colour[covered & (best == k)] = c
        shape[covered & (best == k)] = s
        cx, cy = obj.centre
        centre[int(cy) // PATCH_SIZE * grid + int(cx) // PATCH_SIZE] = 1
        presence[c * len(SHAPES) + s] = 1
    glyphs = np.zeros(len(GLYPHS), dtype=np.float32)
    for k, sign in enumerate(scene.signs):
        glyph[covered & (best == n + k)] = GLYPHS.index(sign.glyph)
        glyphs[GLYPHS.index(sign.glyph)] = 1
    return {
        "presence": presence,
        "count": np.int64(max(n, 1) - 1),
        "glyphs": glyphs,
        "patch_colour": colour,
        "patch_shape": shape,
        "patch_glyph": glyph,
        "patch_centre": centre,
    }


def batch(seeds: list[int], signs: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images, targets = [], []
    for seed in seeds:
        scene = sample_scene(seed, signs=signs)
        image, labels = render(scene)
        images.append(image)
        targets.append(scene_targets(scene, labels))
    stacked = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
    return to_pixels(images), stacked


KINDS = 3  # per patch: background, object, sign


def patch_places(patches: int) -> torch.Tensor:
    """(column, row) of each patch of a square grid in raster order, scaled to [-1, 1]: [patches, 2]."""
    grid = round(patches**0.5)
    coords = torch.linspace(-1, 1, grid)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


def patch_pairs(targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per patch, the colour-shape pair (colour * shapes + shape) of the object covering it, or
    NUM_PAIRS where none does."""
    on_object = targets["patch_shape"] != NO_SHAPE
    pair = targets["patch_colour"].clamp(max=NO_COLOUR - 1) * NO_SHAPE + targets["patch_shape"].clamp(max=NO_SHAPE - 1)
    return torch.where(on_object, pair, NUM_PAIRS)


def _masked_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[mask], target[mask]) if mask.any() else logits.sum() * 0


class PretrainHeads(nn.Module):
    """Linear read-outs used only for pretraining (not part of the shipped model).

    Per patch, what covers it (background / object / sign) is one target; colour, shape and pair are
    scored on object patches only and the glyph on sign patches only, so the few patches that
    matter are not drowned by the background ones; the patch's place is scored on all patches and
    again on those that show something (an object's patches otherwise lost their place). The patch
    read-outs are linear in the raw features, as the projector's first layer is: behind a LayerNorm
    they were learned, but a linear read-out of the raw features found neither places nor pairs.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.cls = nn.Linear(hidden, NUM_PAIRS + COUNT_CLASSES + len(GLYPHS))
        self.patch = nn.Linear(hidden, KINDS + NO_COLOUR + NO_SHAPE + NUM_PAIRS + NO_GLYPH + 1 + 2)

    def losses(
        self, pooled: torch.Tensor, patches: torch.Tensor, t: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict]:
        presence, count, glyph = self.cls(pooled).split([NUM_PAIRS, COUNT_CLASSES, len(GLYPHS)], dim=-1)
        kind, colour, shape, pair, patch_glyph, centre, place = self.patch(patches).split(
            [KINDS, NO_COLOUR, NO_SHAPE, NUM_PAIRS, NO_GLYPH, 1, 2], dim=-1
        )
        on_object = t["patch_shape"] != NO_SHAPE
        on_sign = t["patch_glyph"] != NO_GLYPH
        on_content = on_object | on_sign
        kind_target = on_object.long() + 2 * on_sign.long()
        pair_target = patch_pairs(t)
        place_target = patch_places(patches.shape[1]).to(place.dtype)
        parts = {
            "cls_presence": F.binary_cross_entropy_with_logits(presence, t["presence"]),
            "cls_count": F.cross_entropy(count, t["count"]),
            "cls_glyphs": F.binary_cross_entropy_with_logits(glyph, t["glyphs"]),
            "patch_kind": F.cross_entropy(kind.flatten(0, 1), kind_target.flatten()),
            "patch_colour": _masked_ce(colour, t["patch_colour"], on_object),
            "patch_shape": _masked_ce(shape, t["patch_shape"], on_object),
            "patch_pair": _masked_ce(pair, pair_target, on_object),
            "patch_glyph": _masked_ce(patch_glyph, t["patch_glyph"], on_sign),
            "patch_place": F.mse_loss(place, place_target.expand_as(place)),
            "content_place": F.mse_loss(place[on_content], place_target.expand_as(place)[on_content]),
            "patch_centre": F.binary_cross_entropy_with_logits(
                centre.squeeze(-1)[on_object], t["patch_centre"][on_object]
            )
            if on_object.any()
            else centre.sum() * 0,
        }
        loss = sum(parts.values())
        with torch.no_grad():
            metrics = {
                "loss": float(loss),
                "glyphs_exact": float(((glyph > 0) == (t["glyphs"] > 0.5)).all(-1).float().mean()),
                "count_acc": float((count.argmax(-1) == t["count"]).float().mean()),
                "presence_acc": float(((presence > 0) == (t["presence"] > 0.5)).float().mean()),
                "patch_kind_acc": float((kind.argmax(-1) == kind_target)[on_content].float().mean()),
                "patch_colour_acc": float((colour.argmax(-1) == t["patch_colour"])[on_object].float().mean()),
                "patch_shape_acc": float((shape.argmax(-1) == t["patch_shape"])[on_object].float().mean()),
                "patch_pair_acc": float((pair.argmax(-1) == pair_target)[on_object].float().mean()),
                "patch_glyph_acc": float((patch_glyph.argmax(-1) == t["patch_glyph"])[on_sign].float().mean()),
                "content_place_err": float(
                    (place - place_target).abs()[on_content].mean() * (patches.shape[1] ** 0.5 - 1) / 2
                ),
            }
        return loss, metrics


def train(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads) if args.threads else None
    sizes = Sizes()
    tower = transformers.CLIPVisionModel(vision_config(sizes))
    heads = PretrainHeads(sizes.vision_hidden)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    log = Log(args.run_dir / "train.log")
    log(f"vision: {vars(args)} sizes={sizes} params={sum(p.numel() for p in tower.parameters())}")

    def step(index: int) -> dict:
        pixels, targets = batch(train_scene_seeds(args.seed, STAGE_OFFSET, index, args.batch_size), args.signs)
        out = tower(pixel_values=pixels, output_hidden_states=True)
        loss, metrics = heads.losses(out.pooler_output, out.hidden_states[-2][:, 1:], targets)
        loss.backward()
        return metrics

    result = run_loop(
        "vision",
        args.run_dir,
        {"tower": tower, "heads": heads},
        optimizer,
        step,
        args.steps,
        args.lr,
        args.warmup,
        args.save_every,
        log,
    )
    output = save_folder(args.run_dir / "vision_tower", tower.save_pretrained)
    log(f"vision: saved {output} ({result['seconds']:.0f} s this call)")
    return output
