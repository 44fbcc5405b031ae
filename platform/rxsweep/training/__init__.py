"""rxsweep.training: one DANN/ERM run on Ray Train V2.

    config.py         TrainConfig: every hyperparameter and run setting, with help and search domain
    plan.py           preflight: the config checked against the shards before Ray starts -> RunPlan
    recipe.py        model, optimiser, lr schedule, λ, the training step (shared with the benchmark)
    loop.py           the per-worker function (train, evaluate, all-reduce, report + checkpoint, resume)
    evaluate.py       eval passes and cross-worker reductions
    resampling.py     adaptive-resampling weights of embeddings (pure NumPy)
    resampler.py      adaptive resampling in the loop: the embedding memory, each epoch's draw, its report
    ar_weights_file.py  precomputed AR weights (ar_weights_from), checked against the shards
    site_file.py      the site_id -> value Parquet reader ar_weights_from and --embeddings share
    features_baseline.py  hand-made features + logistic regression (linear_probe), a reference arm
    embeddings_arm.py  the user's own embeddings (--embeddings NAME=FILE) through that linear probe
    embeddings.py     held-out embeddings -> Parquet
    checkpointing.py  checkpoint files (weights_only-safe)
    run_files.py      the run folder: file names, metrics history, claim, splits.parquet
    placement_groups.py  what a run reserves on the cluster, and giving it back
    trainer.py        build_datasets() and build_trainer(): the seam a sweep trial and `rxsweep train` share
    runner.py         train(): the `rxsweep train` command

Modules are imported directly (``from rxsweep.training.runner import train``): this package imports
nothing, so reading a config does not pull in Ray.
"""
