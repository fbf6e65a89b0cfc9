"""Stage 2 itself: conversations, the scene pool, batches and loop (the command and the recipe: train_llava.py)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
import transformers  # its classes load on first use, so `--help` stays fast
from tqdm import tqdm

from llava.models import clip

from .align import align_projector
from .data import validation_rows
from .evaluate import predict, summarize
from .model import PATCH_SIZE, Sizes, build_processor, new_model
from .prompt import training_conversation
from .questions import CATEGORIES, QUESTION_TYPES, make_question, question_rng
from .scene import BACKGROUND_LABEL, render, sample_scene
from .training import Log, run_loop, save_folder, train_scene_seeds
from .vision_training import MIN_PIXELS, to_pixels

STAGE_OFFSET = 5 * 10**8
ALIGN_OFFSET = 4 * 10**8
IGNORE = -100
MAX_ATTEMPTS = 20  # question draws per wanted turn
# Position questions are drawn three times and count and reading 1.5 times as often as the rest:
# drawn uniformly, position stayed near chance (35-45 % on the training log's validation).
TYPE_WEIGHTS = {"existence": 1, "colour": 1, "shape": 1, "count": 1.5, "position": 3, "reading": 1.5}
_TYPE_P = np.array([TYPE_WEIGHTS[t] for t in QUESTION_TYPES]) / sum(TYPE_WEIGHTS.values())


def sample_turns(scene, turns: int, round_: int = 0) -> list[tuple[str, str]]:
    """Up to `turns` distinct (question, answer) pairs about `scene`, types drawn by TYPE_WEIGHTS; each
    `round_` (pass over the scene pool) draws new ones."""
    out, seen = [], set()
    for attempt in range(MAX_ATTEMPTS * turns):  # a scene cannot pose every type; reading always works
        if len(out) == turns:
            break
        rng = question_rng(scene.seed, round_ * 1000 + attempt)
        qtype = QUESTION_TYPES[int(rng.choice(len(QUESTION_TYPES), p=_TYPE_P))]
        categories = CATEGORIES[qtype]
        question = make_question(scene, qtype, categories[int(rng.integers(len(categories)))], rng)
        if question is not None and question.question not in seen:
            seen.add(question.question)
            out.append((question.question, question.answer))
    return out


def encode(tokenizer, turns: list[tuple[str, str]], system: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of the conversation (one image placeholder) and labels (answers only)."""
    text, spans = training_conversation(turns, system)
    ids, labels, cursor = [tokenizer.bos_token_id], [IGNORE], 0
    for start, end in spans:
        prompt = tokenizer(text[cursor:start], add_special_tokens=False).input_ids
        answer = tokenizer(text[start:end], add_special_tokens=False).input_ids
        ids += prompt + answer
        labels += [IGNORE] * len(prompt) + answer
        cursor = end
    return ids, labels


def expand_image(
    ids: list[int], labels: list[int], image_token_id: int, kept: np.ndarray, image_tokens: int, compact: bool = False
):
    """Put the kept patches (ascending patch indices) in place of the image placeholder, each at the
    position id its patch has in the full image, or (`compact`) at consecutive ids, as a pruned
    image arrives; returns ids, labels and position ids."""
    at = ids.index(image_token_id)
    tail = len(ids) - at - 1
    if compact:
        positions = list(range(len(ids) - 1 + len(kept)))
    else:
        positions = [*range(at), *(at + kept).tolist(), *range(at + image_tokens, at + image_tokens + tail)]
    return (
        ids[:at] + [image_token_id] * len(kept) + ids[at + 1 :],
        labels[:at] + [IGNORE] * len(kept) + labels[at + 1 :],
        positions,
    )


def _fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def content_patches(labels: np.ndarray, patch: int) -> np.ndarray:
    """Per patch (raster order): does an object or the sign cover at least MIN_PIXELS of it?"""
    grid = labels.shape[0] // patch
    blocks = labels.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    return (blocks != BACKGROUND_LABEL).sum(1) >= MIN_PIXELS


def background_share(step: int, content_steps: int, ramp_steps: int) -> float:
    """Share of the background patches in the sequence at `step`: 0, then a quadratic ramp, then 1."""
    if step < content_steps:
        return 0.0
    return min(1.0, ((step - content_steps + 1) / max(1, ramp_steps)) ** 2)


def collate(rows: list[tuple[list[int], list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch (training only; generation pads on the left)."""
    width = max(len(ids) for ids, _, _ in rows)
    batch = {
        "input_ids": torch.full((len(rows), width), pad_id),
        "labels": torch.full((len(rows), width), IGNORE),
        "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        "position_ids": torch.zeros((len(rows), width), dtype=torch.long),
    }
    for i, (ids, lab, pos) in enumerate(rows):
        batch["input_ids"][i, : len(ids)] = torch.tensor(ids)
        batch["labels"][i, : len(lab)] = torch.tensor(lab)
        batch["attention_mask"][i, : len(ids)] = 1
        batch["position_ids"][i, : len(pos)] = torch.tensor(pos)
    return batch


class ScenePool:
    """The training scenes, rendered and encoded by the frozen tower once: each step draws its
    images from here (in a fixed order, a new round of questions per pass), so the tower's cost is
    paid per scene, not per step. `cache` (a file) keeps the encoding for a resumed run; it is used
    only if it was made from the same scenes by the same tower."""

    def __init__(self, tower, layer: int, seeds: list[int], cache: Path | None = None, batch_size: int = 32):
        self.seeds = seeds
        key = {"seeds": (seeds[0], len(seeds)), "layer": layer, "tower": _fingerprint(tower)}
        if cache is not None and cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored["key"] == key:
                self.features, self.content = stored["features"], stored["content"]
                return
        # Filled in place: collecting per-batch pieces left the heap so fragmented that the
        # process held about 13 GB for a 0.9 GB pool (measured).
        self.features = self.content = None
        for start in tqdm(range(0, len(seeds), batch_size), desc="encoding training scenes", dynamic_ncols=True):
            rendered = [render(sample_scene(seed)) for seed in seeds[start : start + batch_size]]
            with torch.no_grad():
                vision = clip.encode(tower, to_pixels([image for image, _ in rendered]), layer)
            if self.features is None:  # bfloat16 halves the pool's memory; the LM trains in fp32
                self.features = torch.empty((len(seeds), *vision.features.shape[1:]), dtype=torch.bfloat16)
                self.content = torch.empty((len(seeds), vision.features.shape[1]), dtype=torch.bool)
            self.features[start : start + len(rendered)] = vision.features
            for k, (_, labels) in enumerate(rendered):
                self.content[start + k] = torch.from_numpy(content_patches(labels, PATCH_SIZE))
        if cache is not None:
            tmp = cache.with_suffix(".tmp")
            torch.save({"key": key, "features": self.features, "content": self.content}, tmp)
            tmp.replace(cache)

    def batch(
        self, step: int, batch_size: int, tokenizer, turns: int, share: float, system_share: float, compact_share: float
    ):
        """The token batch and the kept patch features (concatenated) of one training step."""
        rows, kept_features = [], []
        for k in range(batch_size):
            slot, round_ = divmod(step * batch_size + k, len(self.seeds))[::-1]
            seed = self.seeds[slot]
            coin = question_rng(seed, 2**31 + round_).random(
                self.content.shape[1]
            )  # which background patches come along
            kept = np.flatnonzero(self.content[slot].numpy() | (coin < share))
            kept_features.append(self.features[slot, kept].float())
            system, compact = question_rng(seed, 2**31 - 1 - round_).random(2) < (system_share, compact_share)
            ids, lab = encode(tokenizer, sample_turns(sample_scene(seed), turns, round_), bool(system))
            rows.append(expand_image(ids, lab, tokenizer.image_token_id, kept, self.content.shape[1], bool(compact)))
        return collate(rows, tokenizer.pad_token_id), torch.cat(kept_features)


def train(args: argparse.Namespace) -> Path:
    torch.set_num_threads(args.threads) if args.threads else None
    args.run_dir.mkdir(parents=True, exist_ok=True)
    log = Log(args.run_dir / "train.log")
    processor = build_processor()
    tokenizer = processor.tokenizer
    sizes = Sizes()
    model = new_model(tokenizer, sizes, seed=args.seed)
    vision_dir = args.run_dir / "vision_tower"
    if not (vision_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no pretrained vision tower at {vision_dir}; run `python -m scenette.train_vision` first"
        )
    model.model.vision_tower.load_state_dict(transformers.CLIPVisionModel.from_pretrained(vision_dir).state_dict())
    tower = model.model.vision_tower.eval().requires_grad_(False)
    if not (args.run_dir / "llava-state.pt").is_file():
        stats = align_projector(model, train_scene_seeds(args.seed, ALIGN_OFFSET, 0, args.align_images))
        log(f"llava: projector aligned to the vision features: {stats}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    image_tokens = (tower.config.image_size // tower.config.patch_size) ** 2  # what the processor writes
    log(f"llava: {vars(args)} sizes={sizes} trainable={sum(p.numel() for p in trainable)} image_tokens={image_tokens}")
    layer = model.config.vision_feature_layer
    embed = model.get_input_embeddings()
    projector = model.model.multi_modal_projector

    pool = ScenePool(
        tower, layer, train_scene_seeds(args.seed, STAGE_OFFSET, 0, args.pool), args.run_dir / "scene-pool.pt"
    )

    def step(index: int) -> dict:
        share = background_share(index, args.content_steps, args.ramp_steps)
        batch, features = pool.batch(
            index, args.batch_size, tokenizer, args.turns, share, args.system_share, args.compact_share
        )
        image_mask = (batch["input_ids"] == model.config.image_token_id).unsqueeze(-1)
        embeds = embed(batch["input_ids"]).masked_scatter(image_mask, projector(features))
        out = model(
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            labels=batch["labels"],
        )
        out.loss.backward()
        with torch.no_grad():
            predicted = out.logits[:, :-1].argmax(-1)
            target = batch["labels"][:, 1:]
            scored = target != IGNORE
            token_acc = (predicted == target)[scored].float().mean()
        return {"loss": out.loss.item(), "answer_token_acc": float(token_acc), "background_share": share}

    validation = validation_rows(args.validate_per_type) if args.validate_per_type else []

    def validate(done: int) -> None:
        if validation and (done % args.validate_every == 0 or done == args.steps):
            model.eval()
            result = summarize(validation, predict(model, processor, validation, progress=False))
            model.train()
            tower.eval()
            cells = " ".join(f"{t} {a:.1f}" for t, a in result["accuracy"].items())
            log(f"llava step {done} validation ({len(validation)} questions): mean {result['mean']:.1f} | {cells}")

    model.train()
    tower.eval()
    modules = {"projector": projector, "language_model": model.model.language_model, "lm_head": model.lm_head}
    result = run_loop(
        "llava",
        args.run_dir,
        modules,
        optimizer,
        step,
        args.steps,
        args.lr,
        args.warmup,
        args.save_every,
        log,
        validate,
    )
    model.eval()
    output = save_folder(args.output or args.run_dir / "model",
                         lambda folder: (model.save_pretrained(folder), processor.save_pretrained(folder)))  # fmt: skip
    log(f"llava: saved {output} ({result['seconds']:.0f} s this call)")
    return output
