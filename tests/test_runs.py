import torch

from llava.models.runs import retile, run_counts

P = 9  # the placeholder id


def test_runs_shrink_and_grow_per_image_and_rows_are_repadded_on_the_left():
    ids = torch.tensor([[0, 0, 1, P, P, P, 2, P, P, 3], [5, 1, P, P, P, P, P, P, 2, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 10])
    labels = ids.clone()
    counts = run_counts(ids, P, old_lengths=[3, 2, 6], new_lengths=[1, 4, 2])
    (new_ids, new_labels), new_mask = retile(counts, [(ids, 0), (labels, -100)], mask)
    assert new_ids.tolist() == [[1, P, 2, P, P, P, P, 3], [0, 0, 5, 1, P, P, 2, 3]]
    assert new_mask.tolist() == [[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1]]
    assert new_labels.tolist()[1][:2] == [-100] * 2
    assert run_counts(new_ids, P, [3, 2, 6], [1, 4, 2]) is None  # not the written runs any more


def test_right_padding_stays_right_and_positions_follow_their_tokens():
    ids = torch.tensor([[1, P, P, 2, 0], [1, P, P, 2, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    positions = torch.arange(5).expand(3, 2, 5) * torch.tensor([1, 10, 100])[:, None, None]
    keep = torch.tensor([[1, 0, 1, 1, 1], [1, 1, 0, 1, 1]])
    (new_ids, new_positions), new_mask = retile(keep, [(ids, 0), (positions, 0)], mask)
    assert new_ids.tolist() == [[1, P, 2, 0], [1, P, 2, 3]]
    assert new_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert new_positions[:, 0].tolist() == [[0, 2, 3, 0], [0, 20, 30, 0], [0, 200, 300, 0]]
    assert new_positions[:, 1].tolist() == [[0, 1, 3, 4], [0, 10, 30, 40], [0, 100, 300, 400]]


def test_no_mask_is_made_when_rows_stay_equal():
    ids = torch.tensor([[1, P, P, 2], [3, P, P, 4]])
    (new_ids,), mask = retile(run_counts(ids, P, [2, 2], [1, 1]), [(ids, 0)])
    assert new_ids.tolist() == [[1, P, 2], [3, P, 4]] and mask is None
