"""Probes of what features say about a label: k-NN and linear-probe top-1, by k-fold cross-validation over folds
chosen by a hash of each item's key.

The protocol (the same for every model, so it is part of a report):

- folds: an item's fold is floor(FOLDS * u), u the first 8 bytes of sha256(SALT + ":" + its key) read as a fraction
  of 2**64 (`hash_fold`); keys are file names or sample keys, so the folds are the same on every machine and for
  every model probed on the same images. Each fold is tested once, by a probe fitted on the other folds; a top-1 is
  right answers over all items (every item is tested exactly once: on a few hundred images that halves the noise
  of a single 70/30 split);
- chance: the share of the most frequent class (always answering it; per fold, a training part's majority is the
  test fold's minority, which would put "chance" below 1 / classes);
- k-NN (as DINO and BEiT evaluate features): cosine similarity to every training item, the k most similar vote with
  weight exp(similarity / temperature), top-1 of the summed votes (`knn_top1`);
- linear probe: features standardised with the training part's mean and standard deviation, multinomial logistic
  regression (scikit-learn, L-BFGS); its inverse regularisation C is chosen among `CS` by the top-1 on an inner
  hash split of the training part only, then refit on the whole training part (`linear_probe_top1`).

Features are float arrays [N, D] (one row per image), labels int arrays [N]. Nothing here reads images or models.
"""
from __future__ import annotations

import hashlib

import numpy as np

SALT = "mmtok-probe-v1"
FOLDS = 5
CS = (0.01, 0.1, 1.0, 10.0)
K, TEMPERATURE = 20, 0.07


def _unit_interval(keys: list[str], salt: str) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.sha256(f"{salt}:{k}".encode()).digest()[:8], "big") / 2**64
                     for k in keys])


def hash_fold(keys: list[str], folds: int = FOLDS, salt: str = SALT) -> np.ndarray:
    """Int [N]: each item's fold in 0..folds-1 (module docstring)."""
    return np.minimum((_unit_interval(keys, salt) * folds).astype(int), folds - 1)


def hash_split(keys: list[str], test_fraction: float, salt: str = SALT) -> np.ndarray:
    """Bool [N]: True for the items whose hash fraction is below `test_fraction` (the inner split of C)."""
    return _unit_interval(keys, salt) < test_fraction


def knn_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, k: int = K,
             temperature: float = TEMPERATURE, chunk: int = 1024) -> float:
    """Temperature-weighted cosine k-NN top-1 (module docstring); test rows go through in chunks of `chunk`."""
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    tr, classes = unit(train_x), np.unique(train_y)
    onehot = (np.asarray(train_y)[:, None] == classes[None, :]).astype(np.float64)
    k = min(k, len(tr))
    right = 0
    for start in range(0, len(test_x), chunk):
        sims = unit(test_x[start:start + chunk]) @ tr.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(sims, top, axis=1) / temperature)
        votes = np.einsum("nk,nkc->nc", weights, onehot[top])
        right += int(np.sum(classes[votes.argmax(1)] == test_y[start:start + chunk]))
    return right / max(len(test_x), 1)


def linear_probe_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
                      train_keys: list[str], cs=CS) -> tuple[float, float]:
    """(top-1 on the test part, the C chosen on an inner split of the training part) of a standardised multinomial
    logistic regression (module docstring)."""
    from sklearn.linear_model import LogisticRegression

    def fit(x, y, c):
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tr, te = (train_x - mean) / std, (test_x - mean) / std
    inner = hash_split(train_keys, 0.25, salt=SALT + "-inner")
    best_c = cs[0]
    if inner.any() and (~inner).any() and len(np.unique(train_y[~inner])) > 1:
        scores = [float(np.mean(fit(tr[~inner], train_y[~inner], c).predict(tr[inner]) == train_y[inner]))
                  for c in cs]
        best_c = cs[int(np.argmax(scores))]
    model = fit(tr, train_y, best_c)
    return float(np.mean(model.predict(te) == test_y)), best_c


def probe(features: np.ndarray, labels: np.ndarray, keys: list[str], *, folds: int = FOLDS) -> dict:
    """Every number of the protocol for one feature set: {"items", "folds", "classes", "chance", "knn_top1",
    "linear_top1", "linear_c" (the C chosen in each fold)}. Raises ValueError when a fold's training part holds
    fewer than two classes."""
    fold = hash_fold(keys, folds)
    right = {"knn": 0, "linear": 0}
    chosen = []
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        tr_y, te_y = labels[~test], labels[test]
        if len(np.unique(tr_y)) < 2:
            raise ValueError("a probe needs at least two classes in every fold's training part")
        tr_keys = [k for k, t in zip(keys, test) if not t]
        linear, c = linear_probe_top1(features[~test], tr_y, features[test], te_y, train_keys=tr_keys)
        n = int(test.sum())
        right["knn"] += round(knn_top1(features[~test], tr_y, features[test], te_y) * n)
        right["linear"] += round(linear * n)
        chosen.append(c)
    n = len(labels)
    counts = np.unique(labels, return_counts=True)[1]
    return {"items": n, "folds": folds, "classes": len(counts), "chance": float(counts.max() / n),
            "knn_top1": right["knn"] / n, "linear_top1": right["linear"] / n, "linear_c": chosen}
