"""Splits by source image: every QF (and every crop) of one source stays in one split (method notes §3.4).

Groups are shuffled once with a seeded generator and dealt round-robin into k folds, so fold sizes differ by at
most one group and the same (groups, k, seed) always gives the same folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sgjnd.data.datasets import DatasetError, JNDDataset
from sgjnd.errors import UsageError


@dataclass(frozen=True)
class Fold:
    """One fold: indices into the source list for training and for validation."""

    train: tuple[int, ...]
    val: tuple[int, ...]


def group_kfold(groups: Sequence[str], k: int, *, seed: int = 0) -> list[Fold]:
    """k folds over items whose ``groups`` never straddle a train/validation boundary.

    Args:
        groups: the split key of each item (e.g. each source's group).
        k: number of folds, 2 <= k <= number of distinct groups.
        seed: seed of the group shuffle.

    Returns:
        k folds; fold i validates on the groups dealt to it and trains on all others.

    Raises:
        UsageError: k is below 2 or above the number of distinct groups.
    """
    distinct = sorted(set(groups))
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise UsageError(f"k must be an integer >= 2, got {k!r}")
    if k > len(distinct):
        raise UsageError(f"cannot make {k} folds from {len(distinct)} source group(s): use k <= {len(distinct)}")
    order = np.random.default_rng(seed).permutation(len(distinct))
    fold_of = {distinct[g]: i % k for i, g in enumerate(order.tolist())}
    folds = []
    for f in range(k):
        val = tuple(i for i, g in enumerate(groups) if fold_of[g] == f)
        train = tuple(i for i, g in enumerate(groups) if fold_of[g] != f)
        folds.append(Fold(train, val))
    return folds


def split_dataset(dataset: JNDDataset, *, k: int = 5, fold: int = 0, seed: int = 0,
                  val_groups: Sequence[str] | None = None) -> tuple[JNDDataset, JNDDataset]:
    """Training and validation subsets of ``dataset``, by source group.

    Args:
        dataset: the dataset to split.
        k: number of folds (ignored when ``val_groups`` is given).
        fold: which fold validates, 0 <= fold < k.
        seed: seed of the group shuffle.
        val_groups: explicit validation groups instead of a fold.

    Returns:
        ``(train, val)``.

    Raises:
        UsageError: bad k or fold; DatasetError: an explicit group is not in the dataset.
    """
    groups = dataset.groups
    if val_groups is not None:
        unknown = sorted(set(val_groups) - set(groups))
        if unknown:
            raise DatasetError(f"validation group(s) {unknown[:5]} are not in {dataset.root}: expected some of "
                               f"{sorted(set(groups))[:5]}")
        val_idx = [i for i, g in enumerate(groups) if g in set(val_groups)]
    else:
        if not 0 <= fold < k:
            raise UsageError(f"fold must be in 0..{k - 1}, got {fold}")
        val_idx = list(group_kfold(groups, k, seed=seed)[fold].val)
    names = dataset.names
    val_names = {names[i] for i in val_idx}
    train = dataset.subset(n for n in names if n not in val_names)
    val = dataset.subset(val_names)
    return train, val
