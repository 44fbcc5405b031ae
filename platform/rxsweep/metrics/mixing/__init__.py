"""Batch-mixing metrics of an embedding: pure functions, arrays in, a float out (1 = well mixed).

One concern a file, each with its formula and reference in the module docstring:

- ``neighbors.knn``                     exact Euclidean kNN, self excluded, (distance, index) order
- ``lisi.ilisi``                        scaled iLISI (Korsunsky et al. 2019; scib / scib-metrics)
- ``kbet.kbet_acceptance``              kBET acceptance rate (Büttner et al. 2019)
- ``silhouette.silhouette_batch``       batch ASW within labels (scib, scale=True)
- ``graph_connectivity.graph_connectivity``  largest-component share per label (scib)
- ``probe.batch_probe``                 1 - chance-corrected balanced accuracy of a grouped-CV probe
- ``scores.batch_mixing_scores``        all of the above within strata (cell types), size-weighted,
                                        + ``mixing``

The composite, defined here and in ``scores.py`` only (other code refers to these constants):

    mixing = mean of COMPOSITE_KEYS = (ilisi, kbet, graph_connectivity, batch_probe)

each computed within cell type and averaged over cell types by size. ``silhouette_batch`` is in
SCORE_KEYS (computed and reported) but not in the composite: silhouette assumes compact,
spherical clusters and compares each point with the nearest other batch only, so it can score
partly integrated or nested batches as mixed (Rautenstrauch & Ohler, Nat Biotechnol 2025;
``scores.py`` says more). The label of the label-aware scores is the cell type, as in scib.

The ``*_knn`` variants take a precomputed neighbour table so one kNN serves several metrics.
"""

from .graph_connectivity import graph_connectivity, graph_connectivity_knn
from .kbet import kbet_acceptance, kbet_knn
from .lisi import ilisi, ilisi_knn, lisi_knn
from .neighbors import knn
from .probe import batch_probe
from .scores import COMPOSITE_KEYS, SCORE_KEYS, batch_mixing_scores
from .silhouette import silhouette_batch, silhouette_samples

__all__ = [
    "COMPOSITE_KEYS",
    "SCORE_KEYS",
    "batch_mixing_scores",
    "batch_probe",
    "graph_connectivity",
    "graph_connectivity_knn",
    "ilisi",
    "ilisi_knn",
    "kbet_acceptance",
    "kbet_knn",
    "knn",
    "lisi_knn",
    "silhouette_batch",
    "silhouette_samples",
]
