"""Every shipped training config loads and names a registered backbone."""

from pathlib import Path

import pytest

from zima.training.config import TrainConfig
from zima.training.models import BACKBONES

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_there_are_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path: Path) -> None:
    config = TrainConfig.from_toml(path)
    assert config.policy.backbone in BACKBONES
    assert config.data.dirs
