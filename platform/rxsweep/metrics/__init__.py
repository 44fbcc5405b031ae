"""Pure metrics on arrays and tables: arrays in, numbers out; no sweep folders, no training.

Batch-mixing scores reward an embedding that forgets the batch; a collapsed embedding (every image
mapped to one point) forgets the biology too and mixes perfectly. The biology-retention metrics
(top-k, plate-constrained, replicate retrieval) measure the siRNA signal left on experiments the
model never saw, so such a model cannot win a ranking. Each module states its formula.

- ``mixing``               batch-mixing scores of an embedding (kNN, iLISI, kBET, ASW, GC, probe)
- ``topk``                 top-k accuracy of per-row class scores
- ``plate_constrained``    plate-constrained accuracy (one siRNA group a plate, Hungarian assignment)
- ``replicate_retrieval``  cross-experiment replicate-retrieval mAP of (well) profiles
- ``embedding_scores``     mixing and retention scores of one embeddings table (a trial's end of run)
- ``checks``               argument checks shared by the metrics (ValueError naming the argument)

Imports numpy, scipy, scikit-learn, pandas, pyarrow, threadpoolctl and torch (the kNN kernels of
``mixing``) and nothing of rxsweep outside this package (tests/test_import_floors.py checks).
Nothing is imported here, so ``rxsweep.metrics.topk`` does not pay for torch.
"""
