"""The probe protocol (mmtok.evaluation.probe): it finds a planted class signal well above chance, reports chance
for shuffled labels and for noise features, and splits the same way on every machine."""
from __future__ import annotations

import numpy as np
import pytest

from mmtok.evaluation.probe import hash_fold, knn_top1, probe


def _planted(n: int = 400, classes: int = 5, dim: int = 32, signal: float = 1.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=n)
    centres = rng.normal(size=(classes, dim))
    features = signal * centres[labels] + rng.normal(size=(n, dim))
    keys = [f"img_{i:05d}.png" for i in range(n)]
    return features, labels, keys


def test_a_planted_signal_is_found_well_above_chance():
    features, labels, keys = _planted()
    r = probe(features, labels, keys)
    assert r["chance"] < 0.35
    assert r["knn_top1"] > 0.85 and r["linear_top1"] > 0.85
    assert r["items"] == 400 and r["folds"] == 5 and r["classes"] == 5


@pytest.mark.parametrize("spoil", ["shuffled labels", "noise features"])
def test_without_a_signal_the_probe_reports_chance(spoil):
    features, labels, keys = _planted(n=600)
    rng = np.random.default_rng(1)
    if spoil == "shuffled labels":
        labels = rng.permutation(labels)
    else:
        features = rng.normal(size=features.shape)
    r = probe(features, labels, keys)
    # 5 balanced classes, 600 items each tested once: chance is ~0.2 and its noise ~0.02
    assert r["knn_top1"] < r["chance"] + 0.12 and r["linear_top1"] < r["chance"] + 0.12


def test_the_folds_depend_only_on_the_keys():
    keys = [f"photo_{i}.jpg" for i in range(1000)]
    a, b = hash_fold(keys), hash_fold(list(reversed(keys)))[::-1]
    assert np.array_equal(a, b) and all(150 < int((a == f).sum()) < 250 for f in range(5))
    assert hash_fold(["photo_0.jpg", "photo_1.jpg", "photo_2.jpg"]).tolist() == a[:3].tolist()


def test_knn_and_chance_on_a_tiny_hand_made_case():
    train_x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_y = np.array([0, 0, 1, 1])
    test_x, test_y = np.array([[1.0, 0.05], [0.05, 1.0]]), np.array([0, 1])
    assert knn_top1(train_x, train_y, test_x, test_y, k=2) == 1.0


def test_one_class_is_refused():
    features, labels, keys = _planted(n=50)
    with pytest.raises(ValueError, match="two classes"):
        probe(features, np.zeros_like(labels), keys)
