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
    """`num_frames` frames spread evenly over the video, [F, H, W, 3] uint8: `llava.video.read_frames`, whose
    rule (`llava.video.sample_indices`: Video-LLaVA's `np.linspace(0, n - 1, F, dtype=int)`, also lmms-eval's)
    is the one every video reader here follows. Only the picked frames are converted to arrays."""
    from llava.video import read_frames

    return read_frames(path, num_frames, backend="pyav")
