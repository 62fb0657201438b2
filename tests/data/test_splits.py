"""Splits by source group: groups never straddle, folds are deterministic and balanced."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgjnd.data import DatasetError, JNDDataset, Source, group_kfold, split_dataset
from sgjnd.errors import UsageError

GROUPS = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]


def test_groups_never_straddle_and_cover_everything() -> None:
    folds = group_kfold(GROUPS, 3, seed=1)
    assert len(folds) == 3
    seen: list[int] = []
    for fold in folds:
        assert set(fold.train) | set(fold.val) == set(range(len(GROUPS)))
        assert {GROUPS[i] for i in fold.train}.isdisjoint({GROUPS[i] for i in fold.val})
        seen += fold.val
    assert sorted(seen) == list(range(len(GROUPS)))  # each item validates exactly once
    sizes = [len({GROUPS[i] for i in f.val}) for f in folds]
    assert max(sizes) - min(sizes) <= 1  # 7 groups over 3 folds: 3, 2, 2


def test_same_seed_same_folds() -> None:
    assert group_kfold(GROUPS, 4, seed=3) == group_kfold(GROUPS, 4, seed=3)
    assert group_kfold(GROUPS, 4, seed=3) != group_kfold(GROUPS, 4, seed=4)


def test_bad_k() -> None:
    with pytest.raises(UsageError, match=r"cannot make 8 folds from 7 source group\(s\)"):
        group_kfold(GROUPS, 8)
    with pytest.raises(UsageError, match="k must be an integer >= 2"):
        group_kfold(GROUPS, 1)


def test_split_dataset_by_fold_and_by_groups() -> None:
    sources = tuple(Source(name=f"s{i}", group=g, reference=Path(f"s{i}.png"), jnd=30.0) for i, g in enumerate(GROUPS))
    data = JNDDataset("proxy", Path("labels.csv"), sources, False, "test")
    train, val = split_dataset(data, k=3, fold=0, seed=1)
    assert set(train.names) | set(val.names) == set(data.names)
    assert set(train.groups).isdisjoint(val.groups)
    train, val = split_dataset(data, val_groups=["c"])
    assert val.names == ["s3", "s4", "s5"] and "s3" not in train.names
    with pytest.raises(DatasetError, match=r"validation group\(s\) \['zz'\] are not in"):
        split_dataset(data, val_groups=["zz"])
    with pytest.raises(UsageError, match=r"fold must be in 0\.\.2"):
        split_dataset(data, k=3, fold=3)
