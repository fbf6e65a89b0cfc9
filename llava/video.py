"""Frames from video files, sampled uniformly, for the video model families.

The one sampling rule (`sample_indices`), used by `read_frames` and by the lmms-eval plugin's video
reader (eval/plugin/media.py): Video-LLaVA's own, `np.linspace(0, n - 1, F, dtype=int)`: F frames spread
evenly from the first to the last, each index rounded *down* (the cast truncates), exactly as Video-LLaVA's
LanguageBind video processor (`load_and_transform_video`, decord and opencv readers) and lmms-eval's
readers (`lmms_eval/models/model_utils/load_video.py`) pick them. One difference from lmms-eval: a clip
with fewer frames than F repeats frames, as Video-LLaVA does, rather than returning fewer (Video-LLaVA's
tower takes a fixed number of frames).

>>> frames = read_frames("clip.mp4", num_frames=8)            # uint8 [8, H, W, 3], PyAV
>>> frames = read_frames("clip.mp4", 8, backend="decord")     # the same frames through decord
>>> pixel_values_videos = frames_to_pixel_values(frames, image_processor)   # [1, 8, 3, S, S]

Transformers' video processors need torchvision, which CPU machines here cannot use; running a
model's image processor over the frames gives the same `pixel_values_videos` the Video-LLaVA and
LLaVA-NeXT-Video processors build (resize, crop, normalise per frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

BACKENDS = ("pyav", "decord")


def sample_indices(total_frames: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over [0, total_frames - 1], first and last included, each rounded
    down: `np.linspace(0, total_frames - 1, num_frames, dtype=int)`, Video-LLaVA's and lmms-eval's rule (see
    the module's docstring); a shorter video repeats frames."""
    if total_frames < 1:
        raise ValueError(f"the video has no frames (total_frames={total_frames})")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames, dtype=int).tolist()


def read_frames(path: str | Path, num_frames: int = 8, backend: str = "pyav") -> np.ndarray:
    """`num_frames` RGB frames of the video at `path`, sampled uniformly: uint8 [F, H, W, 3]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    if backend == "pyav":
        return _read_pyav(path, num_frames)
    if backend == "decord":
        return _read_decord(path, num_frames)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def frames_to_pixel_values(frames, image_processor) -> torch.Tensor:
    """[1, F, 3, S, S] `pixel_values_videos` for one video from its frames ([F, H, W, 3] or images)."""
    return image_processor(list(frames), return_tensors="pt").pixel_values[None]


def _read_pyav(path: Path, num_frames: int) -> np.ndarray:
    try:
        import av
    except ImportError as error:
        raise ImportError("reading videos with backend='pyav' needs PyAV: pip install 'av<16'") from error
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames or sum(1 for _ in container.decode(video=0))  # some containers do not say
        wanted = sample_indices(total, num_frames)
        container.seek(0)
        picked: dict[int, np.ndarray] = {}
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                picked[index] = frame.to_ndarray(format="rgb24")
            if index >= wanted[-1]:
                break
    if len(picked) < len(set(wanted)):
        raise ValueError(f"{path}: could decode only {len(picked)} of the frames {sorted(set(wanted))}")
    return np.stack([picked[index] for index in wanted])


def _read_decord(path: Path, num_frames: int) -> np.ndarray:
    try:
        import decord
    except ImportError as error:
        raise ImportError("reading videos with backend='decord' needs decord: pip install decord") from error
    reader = decord.VideoReader(str(path))
    return reader.get_batch(sample_indices(len(reader), num_frames)).asnumpy()
