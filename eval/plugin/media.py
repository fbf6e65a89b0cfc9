"""What lmms-eval tasks hand a model as visuals: PIL images, or paths to video files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v"}


def split_visuals(visuals) -> tuple[list[Image.Image], list[str]]:
    """(images, video paths) in order; anything else is an error naming what was given."""
    images, videos = [], []
    for visual in visuals or []:
        if isinstance(visual, Image.Image):
            images.append(visual.convert("RGB"))
        elif isinstance(visual, (str, Path)) and Path(visual).suffix.lower() in VIDEO_SUFFIXES:
            videos.append(str(visual))
        elif isinstance(visual, (str, Path)):
            images.append(Image.open(visual).convert("RGB"))
        else:
            raise ValueError(f"unsupported visual {type(visual).__name__}: expected a PIL image or an image/video path")
    return images, videos


def sample_frames(path: str, num_frames: int) -> np.ndarray:
    """`num_frames` frames spread uniformly over the video (the middle of equal segments), [F, H, W, 3] uint8.

    Only the picked frames are converted to arrays, so long videos do not fill memory.
    """
    import av  # only video tasks need it

    with av.open(path) as container:
        total = container.streams.video[0].frames or sum(1 for _ in container.decode(video=0))
    if total == 0:
        raise ValueError(f"{path}: no video frames could be decoded")
    segment = total / num_frames
    picks = [min(total - 1, int(segment * (i + 0.5))) for i in range(num_frames)]  # repeats when frames are few
    wanted, frames = set(picks), {}
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= picks[-1]:
                break
    if len(frames) < len(wanted):
        raise ValueError(f"{path}: the container claims {total} frames but fewer could be decoded")
    return np.stack([frames[i] for i in picks])
