"""An independent, deliberately literal restatement of the published VisPruner selection.

One image at a time, a fresh similarity matrix every round, the same index shuffles as the
official code; it fails exactly where that code fails (odd pool, too few even-side tokens).
Used only as the test oracle for `llava.pruning.vispruner.select`. One deliberate difference: the
published code's argsorts are unstable, which leaves the order of exactly equal scores to the sort
kernel (in float32 such ties do occur every few hundred rounds); the oracle sorts stably so that
the comparison is well defined.
"""

import torch


class PublishedCodeFails(Exception):
    pass


def published_select(features, cls_attention, visual_token_num, important_ratio):
    if cls_attention.dim() == 3:
        cls_attention = cls_attention.mean(dim=1)
    results = []
    for feats, attn in zip(features, cls_attention):
        num_important = int(visual_token_num * important_ratio)
        num_diverse = visual_token_num - num_important
        ranking = torch.argsort(attn, descending=True, stable=True)
        important, residual = ranking[:num_important], ranking[num_important:]
        unit = feats / feats.norm(dim=-1, keepdim=True)
        while num_diverse > 0:
            size = residual.numel()
            drop = min(8, size - num_diverse)
            if drop <= 0:
                break
            if size % 2 or drop > size // 2:
                raise PublishedCodeFails(f"pool of {size} tokens, {drop} to drop")
            tokens = unit[residual]
            scores = (tokens[0::2] @ tokens[1::2].T).max(dim=-1).values
            survivors = scores.argsort(descending=True, stable=True)[drop:]
            residual = torch.cat([residual[0::2][survivors], residual[1::2]])
        kept = torch.cat([important, residual]) if num_diverse > 0 else important
        mask = torch.zeros(feats.shape[0], dtype=torch.bool)
        mask[kept] = True
        results.append(mask.nonzero().squeeze(-1))
    return torch.stack(results)
