"""Purged, embargoed, expanding-window walk-forward splits.

Rows are time-ordered and a label at row ``t`` is known only at ``t + horizon``
(:mod:`models_registry.ml.targets`). Two leaks follow, and two cuts close them:

- purge: the last ``horizon`` rows before a test block have labels that reach into the test period;
  they are removed from that fold's training set;
- embargo: rows right after a test block are serially correlated with it (features built from
  overlapping windows, labels sharing closes). With expanding windows an earlier test block later
  becomes training data, and so do the rows just after it; those first ``embargo`` rows after every
  EARLIER test block are dropped from later training sets. ``embargo`` defaults to ``horizon`` and
  may not be smaller (a smaller embargo would leave label overlap in).

Windowed models (:mod:`.sequence`) see the ``window - 1`` rows before a row as well: a row's
information spans ``[t - window + 1, t + horizon]``, so with ``window > 1`` both cuts widen by
``window - 1`` rows (the test blocks stay where they are, so every family is scored on the same rows).
"""

from __future__ import annotations

import numpy as np

from api.errors import ApplicationError

MIN_TEST_ROWS = 10


def min_rows_needed(*, n_splits: int = 5, horizon: int = 1, min_train: int | None = None) -> int:
    """The smallest ``n`` :func:`purged_walk_forward` accepts with these settings."""
    if min_train is None:
        min_train = max(100, 2 * n_splits * horizon)
    return min_train + n_splits * max(MIN_TEST_ROWS, 2 * horizon)


def purged_walk_forward(
    n: int,
    *,
    n_splits: int = 5,
    horizon: int = 1,
    embargo: int | None = None,
    min_train: int | None = None,
    window: int = 1,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train_idx, test_idx) pairs over rows ``0..n-1``.

    Test blocks are consecutive, equally sized (``min(n // (n_splits + 1), (n - min_train) // n_splits)``
    rows) and end at ``n``; everything before the first one is the initial training block (at least
    ``min_train`` rows), so with plenty of data the history grows by one block per fold."""
    if n_splits < 1:
        raise ValueError("n_splits must be >= 1")
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    if window < 1:
        raise ValueError("window must be >= 1")
    if embargo is None:
        embargo = horizon
    if embargo < horizon:
        raise ValueError(f"embargo ({embargo}) must be >= horizon ({horizon}): labels overlap for horizon rows")
    if min_train is None:
        min_train = max(100, 2 * n_splits * horizon)
    purge = horizon + window - 1
    embargo += window - 1
    if min_train <= purge:
        raise ValueError("min_train must exceed horizon + window - 1 (the purge would leave nothing to train on)")
    min_test = max(MIN_TEST_ROWS, 2 * horizon)
    needed = min_rows_needed(n_splits=n_splits, horizon=horizon, min_train=min_train)
    if n < needed:
        raise ApplicationError(
            "not_enough_data",
            f"Not enough rows for {n_splits} walk-forward folds at horizon {horizon}: {n} usable rows, "
            f"need at least {needed} ({min_train} for the first training block + {n_splits} test blocks "
            f"of {min_test}). Use a longer history, fewer folds or a shorter horizon.",
            {"rows": int(n), "rows_needed": int(needed)},
        )
    # n_splits + 1 equal blocks (the first one at least min_train): each fold adds one block of history
    test_size = min((n - min_train) // n_splits, n // (n_splits + 1))
    first_test = n - n_splits * test_size
    starts = [first_test + k * test_size for k in range(n_splits)]
    excluded = np.zeros(n, dtype=bool)  # embargoed rows after earlier test blocks, accumulated
    splits = []
    for start in starts:
        end = start + test_size
        train_mask = np.zeros(n, dtype=bool)
        train_mask[: start - purge] = True  # purge the last `horizon` (+ window - 1) rows before the test block
        train_mask &= ~excluded
        splits.append((np.flatnonzero(train_mask), np.arange(start, end)))
        excluded[end : min(n, end + embargo)] = True
    return splits
