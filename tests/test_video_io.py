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
    assert sample_indices(40, 8) == [0, 5, 11, 16, 22, 27, 33, 39]  # rounded down, as Video-LLaVA's cast
    assert sample_indices(3, 5) == [0, 0, 1, 1, 2]  # short clips repeat frames
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


def test_the_rule_is_video_llavas_and_lmms_evals():
    """Video-LLaVA's processor picks np.linspace(0, n - 1, F, dtype=int); lmms-eval's readers compute the same
    indices (and, for a clip shorter than F, fewer frames where Video-LLaVA repeats them: we repeat)."""
    load_video = pytest.importorskip("lmms_eval.models.model_utils.load_video")
    for total in range(1, 130):
        for frames in (1, 4, 8, 16):
            rule = np.linspace(0, total - 1, frames, dtype=int).tolist()  # Video-LLaVA's load_and_transform_video
            assert sample_indices(total, frames) == rule, (total, frames)
            if total >= frames:
                assert rule == load_video._compute_uniform_indices(total, frames).tolist(), (total, frames)


def test_the_plugin_reads_the_frames_lmms_evals_reader_reads(video_file):
    """eval/plugin/media.py (the lmms-eval model's video reader) against lmms-eval's own PyAV reader."""
    load_video = pytest.importorskip("lmms_eval.models.model_utils.load_video")
    from eval.plugin.media import sample_frames

    with av.open(str(video_file)) as container:
        theirs = np.stack([frame.to_ndarray(format="rgb24") for frame in load_video.load_video_stream(container, 8)])
    assert np.array_equal(sample_frames(str(video_file), 8), theirs)
    assert np.array_equal(read_frames(video_file, 8), theirs)
