"""Graph connectivity (Luecken et al. 2022, scib ``graph_connectivity``).

Build the kNN graph G (each point to its k nearest other points, Euclidean), symmetrise it
(edge i-j if j is among i's neighbours or i among j's). For each label l with points I_l take the
induced subgraph G[I_l] and its connected components:

    gc_l = |largest component of G[I_l]| / |I_l|
    graph_connectivity = mean over labels of gc_l        in (0, 1], 1 = each label is one piece

What we follow: scib takes components of scanpy's UMAP connectivities (symmetric, 15 neighbours
*including* the point, so 14 others), scib-metrics of the directed kNN distance graph with
``connection="strong"``. We use k other points and the symmetrised graph, where strong and weak
components coincide, with unit edge weights, so duplicate points (distance 0, which a sparse
distance graph would silently drop) stay connected. Labels are weighted equally; a label with a
single point scores 1. Batch labels do not enter: this score reacts to how the embedding is laid
out (batch effects that split a label into separate islands), not to a shuffle of batch labels.
Its floor for a label split evenly over B separated batches is about 1/B, not 0.

The label is the cell type, as in scib: ``batch_mixing_scores`` calls this within one cell type
with a single label, so there gc is the share of the stratum's points in the largest component
of the stratum's kNN graph. With the siRNA as label on well profiles (one well per experiment)
and two experiments, gc_l would only ask whether the two replicate wells are adjacent, and could
not fall below 1/2.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..checks import check_embedding, check_k, check_labels
from .neighbors import knn

__all__ = ["graph_connectivity", "graph_connectivity_knn"]


def graph_connectivity_knn(knn_idx: np.ndarray, label_codes: np.ndarray) -> float:
    """Graph connectivity from (n, k) neighbour indices and (n,) label codes 0..L-1."""
    knn_idx = np.asarray(knn_idx)
    codes = np.asarray(label_codes)
    n, k = knn_idx.shape
    rows = np.repeat(np.arange(n), k)
    A = csr_matrix((np.ones(n * k, dtype=np.int8), (rows, knn_idx.ravel())), shape=(n, n))
    A = (A + A.T).tocsr()
    shares = []
    for lab in range(int(codes.max()) + 1):
        members = np.flatnonzero(codes == lab)
        if members.size == 0:
            continue
        _, comp = connected_components(A[members][:, members], directed=False)
        shares.append(np.bincount(comp).max() / members.size)
    return float(np.mean(shares))


def graph_connectivity(X: np.ndarray, labels: np.ndarray, k: int = 15) -> float:
    """Mean over labels of the share of the label's points in its largest kNN-graph component.

    Args:
        X: (n, d) finite float embedding.
        labels: (n,) labels (the cell type, as scib).
        k: neighbours per point (self excluded), ``k < n``.

    Returns:
        Float in (0, 1]; 1 = every label forms one connected piece of the kNN graph.
    """
    X = check_embedding(X)
    codes = check_labels(labels, X.shape[0], "labels")
    k = check_k(k, X.shape[0])
    _, idx = knn(X, k)
    return graph_connectivity_knn(idx, codes)
