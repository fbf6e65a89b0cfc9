import numpy as np
import pytest

from llava.testing import CLIP_MEAN, CLIP_STD
from llava.video import frames_to_pixel_values, read_frames, sample_indices

av = pytest.importorskip("av")
STEP = 6  # grey level step between consecutive frames


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """A 40-frame H.264 clip whose frame i is a flat grey of level STEP * i."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(40):
            frame = np.full((48, 64, 3), STEP * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_uniform_indices():
    assert sample_indices(40, 8) == [0, 6, 11, 17, 22, 28, 33, 39]
    assert sample_indices(3, 5) == [0, 0, 1, 2, 2]  # short clips repeat frames
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(10, 0)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_frames_are_sampled_uniformly(video_file, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    frames = read_frames(video_file, num_frames=8, backend=backend)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    levels = frames.reshape(8, -1).mean(axis=1) / STEP
    assert np.abs(levels - np.array(sample_indices(40, 8))).max() < 0.5


def test_bad_paths_and_backends(video_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="pyav, decord"):
        read_frames(video_file, backend="opencv")


def test_frames_become_pixel_values_videos(video_file):
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    assert frames_to_pixel_values(read_frames(video_file, 4), processor).shape == (1, 4, 3, 32, 32)
