"""`zima train CONFIG.toml`: train the policy by behaviour cloning (see zima.training.train).

Data-parallel on N processes (one per GPU, or gloo on the CPU), rank 0 reporting::

    torchrun --standalone --nproc_per_node=N $(which zima) train CONFIG.toml

Keys of the file can be overridden for one run: ``--set epochs=4 --set init_from=runs/a/last.pt``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `zima train` arguments."""
    parser.add_argument("config", help="run configuration (TOML; see zima.training.config)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last.pt (overrides the file's resume)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the file, e.g. --set epochs=4 --set "
                             "init_from=runs/demo/last.pt --set 'data.dirs=[\"data/a\"]' "
                             "(repeatable; VALUE is TOML, paths relative to the current "
                             "directory)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    """Train; 0 on success, 2 on a configuration or data error."""
    import dataclasses

    from zima.contract import CONTRACTS
    from zima.episodes import EpisodeError
    from zima.training.config import ConfigError, TrainConfig
    from zima.training.dataset import CacheSpaceError
    from zima.training.distributed import world_from_env
    from zima.training.train import TrainError, train

    try:
        config = TrainConfig.from_toml(args.config, args.set)
        if args.resume:
            config = dataclasses.replace(config, resume=True)
        result = train(config, CONTRACTS[config.task],
                       progress=None if args.quiet else sys.stderr)
    except (ConfigError, TrainError, EpisodeError, FileNotFoundError, CacheSpaceError) as exc:
        print(f"zima train: {exc}", file=sys.stderr)
        return 2
    if world_from_env().rank != 0:  # under torchrun, rank 0 alone reports
        return 0
    skipped = sum(result.skipped.values())
    print(f"{result.epochs_done} epochs on {result.episodes} episodes"
          f"{f' ({skipped} skipped by outcome)' if skipped else ''}, best validation loss "
          f"{result.best_val_loss:.4f}{' (stopped early)' if result.stopped_early else ''}; "
          f"checkpoints and plots in {result.output_dir}")
    return 0
