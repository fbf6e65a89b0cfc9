"""Slow, literal restatements of the published baseline procedures, one image at a time, with Python loops.

Test oracles only: each follows the steps of the method's public code as described in the method
modules, with plain loops and no batching, so that the vectorised implementations can be checked
against them. Sorts are stable (ties go to the earlier token) so that comparisons are well defined.
"""

import math

import torch


def divprune(tokens, keep):
    """Greedy max-min diversity over cosine distance; tokens [N, D]; returns sorted indices."""
    unit = tokens / tokens.norm(dim=1, keepdim=True)
    distance = 1 - unit @ unit.T
    chosen = []
    for step in range(keep):
        if step == 0:
            score = [sorted(distance[:, j].tolist())[1] for j in range(len(tokens))]
        else:
            score = [min(distance[i, j].item() for i in chosen) for j in range(len(tokens))]
        best = max((s, -j) for j, s in enumerate(score) if j not in chosen)
        chosen.append(-best[1])
    return sorted(chosen)


def visionzip(features, cls_token, attention, keys, dominant, contextual):
    """[CLS] + `dominant` patches by summed [CLS] attention + `contextual` merged tokens; one image.

    features [N, C], cls_token [C], attention [H, N], keys [N, D] (head-mean)."""
    score = attention.sum(0).tolist()
    ranked = sorted(range(len(score)), key=lambda j: (-score[j], j))
    top = sorted(ranked[:dominant])
    rest = [j for j in range(len(score)) if j not in top]
    out = [cls_token] + [features[j] for j in top]
    if contextual == 0:
        return torch.stack(out)
    step = max(1, len(rest) // contextual)
    targets = [rest[i] for i in range(0, len(rest), step)][:contextual]
    others = [j for j in rest if j not in targets]
    members = {t: [] for t in targets}
    for j in others:
        sims = [torch.dot(keys[j] / keys[j].norm(), keys[t] / keys[t].norm()).item() for t in targets]
        members[targets[max(range(len(targets)), key=lambda i: (sims[i], -i))]].append(j)
    for t in targets:
        merged = torch.stack([features[j] for j in members[t]]).mean(0) if members[t] else torch.zeros_like(features[t])
        out.append(features[t] + merged)
    return torch.stack(out)


def tome_merge(x, size, metric, r):
    """One ToMe merge with [CLS] (token 0) protected; x [t, c], size [t], metric [t, d].

    Returns (merged tokens, sizes): unmerged even-position tokens in order, then the odd-position
    tokens, each the size-weighted average of itself and the tokens merged into it."""
    unit = metric / metric.norm(dim=1, keepdim=True)
    evens, odds = list(range(0, len(x), 2)), list(range(1, len(x), 2))
    edges = []
    for a in evens:
        if a == 0:
            edges.append((-math.inf, a, None))
            continue
        sims = [torch.dot(unit[a], unit[b]).item() for b in odds]
        best = max(range(len(odds)), key=lambda i: (sims[i], -i))
        edges.append((sims[best], a, odds[best]))
    ranked = sorted(range(len(edges)), key=lambda i: (-edges[i][0], i))
    merged_into = {edges[i][1]: edges[i][2] for i in ranked[:r]}
    total = {b: x[b] * size[b] for b in odds}
    weight = {b: size[b].clone() for b in odds}
    for a, b in merged_into.items():
        total[b] = total[b] + x[a] * size[a]
        weight[b] = weight[b] + size[a]
    keep = [a for a in evens if a not in merged_into]
    tokens = [x[a] for a in keep] + [total[b] / weight[b] for b in odds]
    sizes = [size[a] for a in keep] + [weight[b] for b in odds]
    return torch.stack(tokens), torch.stack(sizes)


def prumerge_plus_merge(features, keys, attention, kept, neighbors):
    """Each kept token plus its `neighbors` most key-similar other patches weighted by attention, then
    the attention-weighted sum of the patches not kept; one image."""
    unit = keys / keys.norm(dim=1, keepdim=True)
    out = []
    for i in kept:
        others = [j for j in range(len(features)) if j != i]
        sims = {j: torch.dot(unit[i], unit[j]).item() for j in others}
        nearest = sorted(others, key=lambda j: (-sims[j], j))[:neighbors]
        out.append(features[i] + sum(attention[j] * features[j] for j in nearest))
    rest = [j for j in range(len(features)) if j not in kept]
    out.append(sum((attention[j] * features[j] for j in rest), torch.zeros_like(features[0])))
    return torch.stack(out)


def dpc_knn(tokens, clusters):
    """Density-peak clustering with k = `clusters` nearest neighbours, cluster means; tokens [n, C]."""
    n, channels = tokens.shape
    dist = [[(tokens[i] - tokens[j]).norm().item() / math.sqrt(channels) for j in range(n)] for i in range(n)]
    density = [math.exp(-sum(d * d for d in sorted(row)[:clusters]) / clusters) for row in dist]
    largest = max(max(row) for row in dist)
    parent = []
    for i in range(n):
        higher = [dist[i][j] for j in range(n) if (density[j], -j) > (density[i], -i)]
        parent.append(min(higher) if higher else largest)
    score = [parent[i] * density[i] for i in range(n)]
    centres = sorted(range(n), key=lambda i: (-score[i], i))[:clusters]
    groups = {c: [] for c in range(clusters)}
    for i in range(n):
        own = centres.index(i) if i in centres else min(range(clusters), key=lambda c: (dist[centres[c]][i], c))
        groups[own].append(i)
    return torch.stack([tokens[groups[c]].sum(0) / (len(groups[c]) + 1e-6) for c in range(clusters)])
