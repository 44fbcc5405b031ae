"""`rxsweep synth | ingest | verify | train | sweep | rank | report | clean-staging`: thin wrappers over the library.

Each subcommand parses its arguments and calls one library function; no logic lives here.
Imports happen inside the handlers so `rxsweep --help` answers without importing Ray or torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rxsweep.cli_support import checked_locations, describe_error, say_how_to_resume


def _synth(args: argparse.Namespace) -> int:
    if args.layout == "loaddata":  # a JUMP-like Cell Painting world: its own generator and presets
        from rxsweep.data.synth.cellpainting import generate_loaddata

        if args.image_size is not None:
            raise ValueError("--image-size is not available with --layout loaddata: its presets fix the size")
        root = generate_loaddata(args.out, preset=args.preset, seed=args.seed, workers=args.workers)
    else:
        from rxsweep.data.synth import generate

        root = generate(args.out, layout=args.layout, preset=args.preset, seed=args.seed,
                        image_size=args.image_size, workers=args.workers)
    print(root)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from rxsweep.data.ingest import ingest

    manifest = ingest(args.data, args.out, image_size=args.image_size, layout=args.layout,
                      progress=not args.quiet)
    counts = manifest["counts"]
    print(f"{args.out}: {counts['written']} sites written, {counts['quarantined']} quarantined "
          f"({counts['listed']} listed)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from rxsweep.training.runner import train

    train(args.data, args.out, config=args.config, overrides=_parse_overrides(args.set))
    return 0


#: The checkout's default study: what `rxsweep sweep` / `python jobs/sweep.py` run without --space.
DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "default.yaml"
#: Trials of the embedded default (no --space, no --data): enough for ERM and both DANN domains to
#: appear, and it ends in minutes on 2 CPU cores. Otherwise the space's own num_samples.
EMBEDDED_SAMPLES = 6
#: Seeds of each method's confirmation runs in the embedded default (the space's own otherwise: 3,
#: as WILDS asks): 2 keep `make run` under 10 minutes on 2 cores.
EMBEDDED_CONFIRM_SEEDS = 2


def _sweep(args: argparse.Namespace) -> int:
    """The one sweep command (`rxsweep sweep` and `python jobs/sweep.py`): get shards (synthetic,
    an RxRx1 folder ingested once, or a shard folder), run the sweep, judge it, write the report;
    say each phase and trial meanwhile (Ray's own output to SWEEP/logs/driver.log unless
    --verbose); then print the verdict, the top trials and the paths, the sweep folder last."""
    from rxsweep import locations
    from rxsweep.analysis.ranking import rank_sweep
    from rxsweep.analysis.report import verdict_of, write_report
    from rxsweep.analysis.sweep_folder import load_sweep
    from rxsweep.analysis.terminal_view import print_sweep_end
    from rxsweep.data.prepare import prepare_data, prepare_synthetic
    from rxsweep.stages import stage
    from rxsweep.training.embeddings_arm import parse_embeddings
    from rxsweep.tuning import sweep_files
    from rxsweep.tuning.progress import terminal
    from rxsweep.tuning.space_yaml import load_space
    from rxsweep.tuning.sweep import check_name, run_sweep
    from rxsweep.tuning.sweep_storage import SweepStorage, push_sweep

    if args.smoke:
        return _smoke(args)
    embedded = args.data is None and args.space is None
    space = args.space or DEFAULT_SPACE
    name = load_space(space).name  # a bad space file or name fails here, before any data is generated or Ray starts
    if args.name is not None:
        name = check_name(args.name)
    storage, data = checked_locations(args)  # a bad path or URI, or one this process may not use, fails here too
    embeddings = parse_embeddings(args.embeddings)  # a bad NAME or a missing file too (the contents: run_sweep)
    folder = SweepStorage.open(locations.join(storage, "sweeps"), name)
    folder.pull()  # at a URI: the sweep's files first (its log among them: this driver appends to it)
    log = None if args.verbose else folder.local / sweep_files.DRIVER_LOG
    try:
        with terminal(log, header="rxsweep sweep " + " ".join(sys.argv[1:])) as progress:
            with stage("data (synthetic)" if data is None else "data"), progress.phase(
                    "data", f"the {args.preset} synthetic set (made once)" if data is None
                    else "--data (shards, or an RxRx1 folder ingested once)"):
                shards = prepare_synthetic(storage, preset=args.preset) if data is None else prepare_data(data, storage)
            progress.say(f"shards: {shards}")
            with stage("sweep"):
                sweep_dir = run_sweep(space, shards, storage=locations.join(storage, "sweeps"),
                                      name=name, resume=args.resume,
                                      num_samples=args.num_samples or (EMBEDDED_SAMPLES if embedded else None),
                                      confirm_seeds=args.confirm_seeds if args.confirm_seeds is not None else
                                      (EMBEDDED_CONFIRM_SEEDS if embedded else None),
                                      max_concurrent=args.max_concurrent, embeddings=embeddings)
            sweep = load_sweep(sweep_dir)
            with stage("verdict (the sweep itself finished)"), progress.phase(
                    "verdict", "the confirmation runs against ERM on the held-out test experiments"
                    if sweep.confirm_record else "none: the sweep ran no confirmation runs"):
                verdict = verdict_of(sweep)  # verdict.json, which the report reads
            with stage("ranking and report (the sweep itself finished)"), progress.phase("report", "ranking, figures"):
                table = rank_sweep(sweep_dir)
                report = write_report(sweep_dir)
    except Exception:
        say_how_to_resume(folder.root)
        raise
    push_sweep(sweep_dir)  # at a URI: the report, the verdict and the whole log go there too
    print_sweep_end(verdict, table, report, sweep_dir)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    """`rxsweep sweep --smoke`: a new sweep of the space's smoke (rxsweep.tuning.smoke) into
    STORAGE/smoke/NAME-K, then the ranking, the report and the verdict, each caught; the table of
    what ran and failed (rxsweep.analysis.smoke_table); 1 when anything failed."""
    import tempfile

    import ray

    from rxsweep import locations
    from rxsweep.analysis.report import write_report
    from rxsweep.analysis.smoke_table import format_smoke_table, run_rows, try_stage
    from rxsweep.analysis.verdict import headline_text, read_verdict
    from rxsweep.cluster import init_ray
    from rxsweep.data.prepare import prepare_data, prepare_synthetic
    from rxsweep.training.plan import open_index
    from rxsweep.tuning import sweep_files
    from rxsweep.tuning.smoke import free_name, smoke_space
    from rxsweep.tuning.space_yaml import load_space
    from rxsweep.tuning.sweep import check_name, run_sweep
    from rxsweep.tuning.sweep_storage import SweepStorage, push_sweep

    if args.resume or args.num_samples is not None:
        raise ValueError("--smoke starts a new sweep of one trial a covering row of the space's choices: "
                         "leave out --resume and --num-samples")
    space_file = args.space or DEFAULT_SPACE
    load_space(space_file)  # a bad space fails before data or Ray
    storage, data = checked_locations(args)
    root = locations.join(storage, "smoke")
    if args.name is not None:
        check_name(args.name)
    shards = prepare_synthetic(storage, preset=args.preset) if data is None else prepare_data(data, storage)
    init_ray()
    smoke = smoke_space(space_file, ray.cluster_resources(), open_index(shards).image_size)
    print(f"smoke of {space_file}: {len(smoke.rows)} trials cover every value of its choices; changed:\n  "
          + "\n  ".join(smoke.changes), flush=True)
    if smoke.never_active:
        print(f"not covered (enabled only by a numeric parameter): {smoke.never_active}", flush=True)
    name = args.name or free_name(root, smoke.space.name)
    sweep_dir = SweepStorage.open(root, name).local

    def search_and_confirm() -> str:
        with tempfile.TemporaryDirectory(prefix="rxsweep-smoke-") as tmp:
            space_path = Path(tmp) / f"{smoke.space.name}.yaml"  # the sweep keeps a copy: space.yaml
            space_path.write_text(smoke.space.text)
            run_sweep(space_path, shards, storage=root, name=name, confirm_seeds=args.confirm_seeds,
                      max_concurrent=args.max_concurrent, embeddings=args.embeddings)
        return f"search and confirmation -> {sweep_dir}"

    def verdict() -> str:
        judged = read_verdict(sweep_dir)
        if judged is None:
            raise RuntimeError(f"the report wrote no {sweep_files.VERDICT_FILE}")
        print(headline_text(judged))
        return f"{sweep_files.VERDICT_FILE} written"

    stages = [try_stage("sweep", search_and_confirm),
              try_stage("ranking", lambda: _print_ranking(sweep_dir)),
              try_stage("report", lambda: str(write_report(sweep_dir))),  # computes the verdict first
              try_stage("verdict", verdict)]
    rows = [*run_rows(sweep_dir), *stages] if (sweep_dir / sweep_files.SWEEP_FILE).exists() else stages
    push_sweep(sweep_dir)
    print(format_smoke_table(rows), end="")
    print(sweep_dir)
    return 0 if all(r.ok for r in rows) else 1


def _verify(args: argparse.Namespace) -> int:
    from rxsweep.data.verify import format_checks, verify_shards

    checks = verify_shards(args.data, sample=args.sample)
    print(format_checks(checks), end="")
    return 0 if all(c.ok for c in checks) else 1


def _clean_staging(args: argparse.Namespace) -> int:
    from rxsweep.mirror import clean_staging, staging_root

    folders = clean_staging(args.root)
    for folder, size, why in folders:
        print(f"{'removed' if why is None else 'kept':8} {size / 2**20:9.1f} MiB  {folder}" + (f"  ({why})" if why else ""))
    freed = sum(size for _, size, why in folders if why is None)
    print(f"clean-staging: {sum(why is None for *_, why in folders)} of {len(folders)} staging folders under "
          f"{args.root or staging_root()} removed, {freed / 2**20:.1f} MiB freed")
    return 0


def _rank(args: argparse.Namespace) -> int:
    from rxsweep.analysis.ranking import format_table, rank_sweep
    from rxsweep.analysis.terminal_view import ranking_table
    from rxsweep.console import render, width
    from rxsweep.tuning.sweep_storage import local_copy

    table = rank_sweep(local_copy(args.sweep), retention=not args.quick)
    compact = args.format == "table" and not args.wide  # at most 120 columns (every column: --wide)
    text = render(ranking_table(table), width()) if compact else format_table(table, args.format)
    if args.out:
        args.out.write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def _report(args: argparse.Namespace) -> int:
    from rxsweep.analysis.report import write_report
    from rxsweep.tuning.sweep_storage import local_copy, push_sweep

    sweep = local_copy(args.sweep)
    report = write_report(sweep, args.out)
    if args.out is None:
        push_sweep(sweep)
    print(report)
    return 0


def _print_ranking(sweep_dir: Path) -> None:
    from rxsweep.analysis.ranking import rank_sweep
    from rxsweep.analysis.terminal_view import ranking_table
    from rxsweep.console import make_console

    make_console().print(ranking_table(rank_sweep(sweep_dir)))


def _parse_overrides(pairs: list[str] | None) -> dict:
    """`--set lr=0.01 --set val_experiments=[HUVEC-04]` -> {'lr': 0.01, 'val_experiments': ['HUVEC-04']}.

    Each value is read as YAML (safe_load), so it gets the type a config file would give it; the
    config then checks it against the field's declared type.
    """
    from rxsweep import yamlio

    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = yamlio.safe_load(value) if value.strip() else ""
        except yamlio.YAMLError as exc:
            raise ValueError(f"--set {key.strip()}: {value!r} is not a YAML value ({exc.problem})") from None
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxsweep", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic RxRx1 dataset in a public layout, or a "
                                "JUMP-like Cell Painting one as CellProfiler LoadData (--layout loaddata)")
    synth.add_argument("--out", required=True, type=Path, help="folder to write into")
    synth.add_argument("--layout", choices=["kaggle", "wilds", "loaddata"], default="kaggle",
                       help="loaddata: 5-channel 16-bit TIFFs of sources x batches x plates, LoadData CSVs "
                            "and a JUMP platemap (presets tiny and small)")
    synth.add_argument("--preset", choices=["tiny", "small", "full"], default="tiny")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=None, help="override the preset's image size")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(handler=_synth)

    ingest = commands.add_parser("ingest", help="decode an RxRx1 folder once into Parquet shards")
    ingest.add_argument("--data", required=True, type=Path, help="RxRx1 folder (Kaggle, WILDS or rxrx.ai layout) "
                        "or a CellProfiler LoadData folder (load_data.csv files and a platemap)")
    ingest.add_argument("--out", required=True, type=Path, help="shard folder to write")
    ingest.add_argument("--image-size", type=int, default=None, help="resize to this edge (default: native)")
    ingest.add_argument("--layout", default="auto", choices=["auto", "kaggle", "wilds", "rxrx1", "loaddata"])
    ingest.add_argument("--quiet", action="store_true", help="no progress output")
    ingest.set_defaults(handler=_ingest)

    verify = commands.add_parser("verify", help="check every shard against manifest.json (sha256, rows, images)")
    verify.add_argument("data", help="shard folder from `rxsweep ingest` (a path or a URI)")
    verify.add_argument("--sample", type=int, default=4, help="row groups a shard whose images are decoded, "
                                                               "besides its first and last (default: 4)")
    verify.set_defaults(handler=_verify)

    clean = commands.add_parser("clean-staging", help="remove local staging copies whose files are all at their URI")
    clean.add_argument("--root", type=Path, default=None,
                       help="staging root (default: $RXSWEEP_STAGING or ~/.cache/rxsweep/staging)")
    clean.set_defaults(handler=_clean_staging)

    train = commands.add_parser("train", help="one training run (Ray Train, no Tune)")
    train.add_argument("--data", required=True, type=Path, help="shard folder from `rxsweep ingest`")
    train.add_argument("--out", required=True, type=Path, help="run folder")
    train.add_argument("--config", type=Path, default=None, help="YAML file of TrainConfig fields")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    train.set_defaults(handler=_train)

    sweep = commands.add_parser("sweep", help="search hyperparameters with Ray Tune + Optuna",
                                description="Run (or resume) a sweep into STORAGE/sweeps/NAME, saying each "
                                            "phase and trial event (Ray's own output: SWEEP/logs/driver.log); "
                                            "write the HTML report; print the verdict, the top trials and the "
                                            "sweep folder last. Also `python jobs/sweep.py` (e.g. under `ray "
                                            "job submit`).")
    add_sweep_arguments(sweep)
    sweep.set_defaults(handler=_sweep)

    rank = commands.add_parser("rank", help="rank a sweep's trials (no Ray needed)")
    rank.add_argument("sweep", help="sweep folder (a path or a URI)")
    rank.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table",
                      help="table (default): the columns a reader needs first, in 120 columns; csv, json, "
                           "markdown: every column, for scripts")
    rank.add_argument("--wide", action="store_true", help="with --format table: every column (wide)")
    rank.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    rank.add_argument("--quick", action="store_true",
                      help="skip the bio-retention columns (plate-constrained accuracy, retrieval)")
    rank.set_defaults(handler=_rank)

    report = commands.add_parser("report", help="write a sweep's self-contained HTML report")
    report.add_argument("sweep", help="sweep folder (a path or a URI: the report is written there too)")
    report.add_argument("--out", type=Path, default=None, help="HTML file (default: SWEEP/report.html)")
    report.set_defaults(handler=_report)
    return parser


def add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("--space", type=Path, default=None,
                       help=f"search space YAML (default: {DEFAULT_SPACE.relative_to(DEFAULT_SPACE.parents[1])})")
    sweep.add_argument("--data", default=None,
                       help="shard folder from `rxsweep ingest` (a path, or a URI: s3://, gs://, file://, read "
                            "in place), or an RxRx1 folder in any public layout or a LoadData folder (ingested once into "
                            "STORAGE/shards/); default: the synthetic --preset")
    sweep.add_argument("--storage", default="results",
                       help="folder for data, shards and sweeps (default: ./results); on a cluster a path "
                            "every node sees, or a URI (s3://bucket/rxsweep, gs://..., file://...)")
    sweep.add_argument("--name", default=None,
                       help="sweep folder name, one path component (default: the space's name)")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sweep.add_argument("--num-samples", type=int, default=None,
                       help=f"trials (default: the space's; {EMBEDDED_SAMPLES} for the embedded default)")
    sweep.add_argument("--confirm-seeds", type=int, default=None,
                       help="seeds of each method's confirmation runs, for the verdict (default: the "
                            f"space's confirm.seeds; {EMBEDDED_CONFIRM_SEEDS} for the embedded default; 0: none)")
    sweep.add_argument("--max-concurrent", type=int, default=None,
                       help="trials at once (default: what the cluster holds)")
    sweep.add_argument("--smoke", action="store_true",
                       help="run every value of every choice of the space for a few steps (a small covering "
                            "set of trials, each restarted once from its checkpoint), through the search, "
                            "confirmation, ranking and verdict, into STORAGE/smoke/; print what ran and "
                            "failed; exit 1 on any failure. Run it before a cluster run")
    sweep.add_argument("--embeddings", action="append", default=None, metavar="NAME=FILE.parquet",
                       help="your own embeddings as a verdict arm (repeatable): a Parquet file with site_id and "
                            "embedding (a list of numbers a site) for every site of the split; the sweep fits the "
                            "features baseline's logistic regression on them and judges NAME and NAME + Harmony "
                            "against ERM. NAME: letters, digits, _ . + -")
    sweep.add_argument("--preset", default="tiny", choices=["tiny", "small", "full"],
                       help="synthetic preset used when no --data is given")
    sweep.add_argument("--verbose", action="store_true",
                       help="show Ray's and Ray Tune's own output (log lines, trial tables) on the terminal; "
                            "by default it goes to SWEEP/logs/driver.log and the terminal gets one line a phase "
                            "and a trial event")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as exc:
        # Bad input or a file system that refused: one clear line, not a traceback. Bugs (other
        # exceptions) keep their traceback.
        print(f"rxsweep {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
