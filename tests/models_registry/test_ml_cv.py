"""Purged, embargoed walk-forward splits, checked index by index on small n."""

from __future__ import annotations

import numpy as np
import pytest

from api.errors import ApplicationError
from models_registry.ml.cv import min_rows_needed, purged_walk_forward


def _lists(splits):
    return [(tr.tolist(), te.tolist()) for tr, te in splits]


def test_exact_indices_purge_and_embargo():
    # 40 rows, 3 folds -> blocks of 10; first test block starts at 10
    splits = _lists(purged_walk_forward(40, n_splits=3, horizon=2, min_train=10))
    assert splits[0] == (list(range(0, 8)), list(range(10, 20)))  # rows 8, 9 purged (labels reach row 10+)
    assert splits[1] == (list(range(0, 18)), list(range(20, 30)))  # 18, 19 purged; no earlier block's end yet
    # fold 3: purge 28, 29; embargo: 20, 21 follow test block 10..19 and are dropped
    assert splits[2] == ([*range(0, 20), *range(22, 28)], list(range(30, 40)))


def test_embargo_larger_than_horizon_and_leftover_rows():
    splits = _lists(purged_walk_forward(43, n_splits=3, horizon=1, embargo=3, min_train=10))
    # 43 rows: blocks of 10 (43 // 4), the 3 left over go to the first training block
    assert [te for _, te in splits] == [list(range(13, 23)), list(range(23, 33)), list(range(33, 43))]
    assert splits[0][0] == list(range(0, 12))
    assert splits[1][0] == list(range(0, 22))
    assert splits[2][0] == [*range(0, 23), *range(26, 32)]  # 23..25 embargoed after block 13..22


def test_train_rows_never_have_labels_reaching_the_test_block():
    for h in (1, 3, 7):
        for train, test in purged_walk_forward(1000, n_splits=5, horizon=h):
            assert train.max() + h < test.min()  # label of train row t is known at t + h < test start
            assert np.intersect1d(train, test).size == 0


def test_embargo_default_is_horizon_and_smaller_is_refused():
    a = purged_walk_forward(500, n_splits=4, horizon=3)
    b = purged_walk_forward(500, n_splits=4, horizon=3, embargo=3)
    assert _lists(a) == _lists(b)
    with pytest.raises(ValueError):
        purged_walk_forward(500, n_splits=4, horizon=3, embargo=2)


def test_not_enough_data_says_how_many_rows():
    needed = min_rows_needed(n_splits=5, horizon=1)
    assert needed == 100 + 5 * 10
    purged_walk_forward(needed, n_splits=5)
    with pytest.raises(ApplicationError) as exc:
        purged_walk_forward(needed - 1, n_splits=5)
    assert exc.value.code == "not_enough_data"
    assert str(needed) in exc.value.message and exc.value.details["rows_needed"] == needed


def test_large_n_blocks_are_equal_and_cover_the_tail():
    splits = purged_walk_forward(50_000, n_splits=5, horizon=1)
    tests = [te for _, te in splits]
    assert len({t.size for t in tests}) == 1 and tests[-1][-1] == 49_999
    assert splits[0][0].size >= 8_000  # the first block is a full block, not just min_train
