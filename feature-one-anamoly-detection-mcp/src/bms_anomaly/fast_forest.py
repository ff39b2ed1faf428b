"""Low-latency Isolation Forest scoring for a handful of rows.

scikit-learn's ``IsolationForest.score_samples`` walks the trees one by one in Python
(about 4 ms for a single row with 100 trees), which is most of a live-inference budget.
:class:`PackedForest` copies the fitted trees into padded NumPy arrays and walks all
trees at once, one tree level per step, so one row costs a few dozen vectorised
operations (~0.1 ms). For large batches scikit-learn's compiled ``apply`` is faster, so
:func:`forest_scores` switches on batch size. Both paths compute the same quantity:
``-2 ** (-mean_path_length / c(max_samples))``, sklearn's ``score_samples``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Batches up to this many rows use the packed NumPy walk; larger ones use scikit-learn.
PACKED_MAX_ROWS = 256
SCORE_DECIMALS = 12


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): average path length of an unsuccessful BST search in n points (sklearn's formula)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


class PackedForest:
    """All trees of a fitted ``IsolationForest`` as padded arrays ``[n_trees, max_nodes]``."""

    def __init__(self, forest: Any):
        trees = [est.tree_ for est in forest.estimators_]
        features = forest.estimators_features_
        n_trees = len(trees)
        width = max(t.node_count for t in trees)
        self.left = np.zeros((n_trees, width), dtype=np.int32)
        self.right = np.zeros((n_trees, width), dtype=np.int32)
        self.feature = np.zeros((n_trees, width), dtype=np.int32)
        self.threshold = np.zeros((n_trees, width), dtype=np.float64)
        self.leaf_value = np.zeros((n_trees, width), dtype=np.float64)
        depth = 0
        for i, (tree, feats) in enumerate(zip(trees, features)):
            n = tree.node_count
            leaf = tree.children_left[:n] == -1
            nodes = np.arange(n)
            # Leaves point to themselves so extra steps keep them in place.
            self.left[i, :n] = np.where(leaf, nodes, tree.children_left[:n])
            self.right[i, :n] = np.where(leaf, nodes, tree.children_right[:n])
            self.feature[i, :n] = np.where(leaf, 0, np.asarray(feats)[np.maximum(tree.feature[:n], 0)])
            self.threshold[i, :n] = np.where(leaf, np.inf, tree.threshold[:n])
            node_depth = tree.compute_node_depths()
            self.leaf_value[i, :n] = node_depth + _average_path_length(tree.n_node_samples[:n]) - 1.0
            depth = max(depth, tree.max_depth)
        self.depth = depth
        self.n_trees = n_trees
        self.denominator = n_trees * float(_average_path_length(np.array([forest._max_samples]))[0])
        self._rows = np.arange(n_trees)[None, :]
        self._trees = trees
        self._features = [
            None if len(f) == forest.n_features_in_ and np.array_equal(f, np.arange(len(f))) else np.asarray(f)
            for f in features
        ]

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Same as ``IsolationForest.score_samples`` (higher = more normal)."""
        X = np.asarray(X, dtype=np.float32)
        n = X.shape[0]
        node = np.zeros((n, self.n_trees), dtype=np.int64)
        trees = np.broadcast_to(self._rows, node.shape)
        row_idx = np.arange(n)[:, None]
        for _ in range(self.depth):
            feat = self.feature[trees, node]
            go_left = X[row_idx, feat] <= self.threshold[trees, node]
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        depths = self.leaf_value[trees, node].sum(axis=1)
        if self.denominator == 0:
            return -np.ones(n)
        return -(2.0 ** (-depths / self.denominator))

    def score_samples_large(self, X: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Same result for big batches: each tree's compiled ``apply`` + one gather of leaf values.

        Skips scikit-learn's per-call validation and its two gathers per tree; rows are
        processed in chunks so the depth accumulator stays in cache.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        out = np.empty(X.shape[0], dtype=np.float64)
        for start in range(0, X.shape[0], chunk):
            xb = X[start : start + chunk]
            depths = np.zeros(xb.shape[0], dtype=np.float64)
            for t, (tree, feats) in enumerate(zip(self._trees, self._features)):
                sub = xb if feats is None else np.ascontiguousarray(xb[:, feats])
                depths += self.leaf_value[t, tree.apply(sub)]
            out[start : start + chunk] = depths
        if self.denominator == 0:
            return -np.ones(X.shape[0])
        return -(2.0 ** (-out / self.denominator))


def forest_scores(forest: Any, packed: PackedForest | None, X: np.ndarray) -> np.ndarray:
    """``score_samples`` of the forest: the packed walk for small batches, per-tree ``apply`` for large ones.

    The two walks add the path depths in different orders, so their sums can differ in the
    last bit; rounding to 12 decimals makes a reading's score independent of the batch it came
    in (it would otherwise cross ties in the ECDF calibration).
    """
    if packed is None:
        scores = forest.score_samples(X)
    elif X.shape[0] <= PACKED_MAX_ROWS:
        scores = packed.score_samples(X)
    else:
        scores = packed.score_samples_large(X)
    return np.round(scores, SCORE_DECIMALS)
