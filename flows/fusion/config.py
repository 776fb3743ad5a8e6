"""``config/fusion.yaml``: how long a member waits, where the split is done, the district teams.

Why a file of its own: the documents give no waiting timeout (D.1.9) and name one 集客施工班组 per
区县 (D.1.4) without listing them — both are the operator's data, not blueprint content. The engine
node kinds read it through :func:`current` (loaded once from ``$HUB_CONFIG_DIR`` or ``config/``), so
a changed table applies to the next group without a blueprint edit (it is not part of a blueprint's
digest: an order keeps its pinned graph, but a team table edit reaches it — that is the point).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.fusion.address import clean
from hub.configfile import load_model

DEFAULT_WAIT_S = 172_800.0  # 48 h: documented in docs/fusion.md


class Team(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    phone: str = ""


class Wait(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_s: float = Field(default=DEFAULT_WAIT_S, gt=0)
    products: dict[str, float] = Field(default_factory=dict)


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: Wait = Field(default_factory=Wait)
    split: dict[str, Literal["hub", "partner"]] = Field(default_factory=dict)
    line_bearing: list[str] = Field(default_factory=list)
    teams: dict[str, Team] = Field(default_factory=dict)
    fallback_team: Team | None = None

    def wait_s(self, product: str | None) -> float:
        value = self.wait.products.get(product or "")
        return float(value) if value is not None and value > 0 else self.wait.default_s

    def split_in_hub(self, partner: str) -> bool:
        return self.split.get(partner, "hub") == "hub"

    def team(self, city: str, district: str) -> Team | None:
        """The one team of ``city/district`` (normalised like the addresses), else the fallback."""
        wanted = f"{city}/{district}"
        for key, team in self.teams.items():
            if "/".join(clean(part) for part in key.split("/", 1)) == wanted:
                return team
        return self.fallback_team


_CURRENT: FusionConfig | None = None


def config_path() -> Path:
    root = os.environ.get("HUB_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "config"
    return Path(root) / "fusion.yaml"


def load(path: Path) -> FusionConfig:
    """The file as a model (``file:line: key: message`` on a bad one); absent: the defaults."""
    return load_model(path, FusionConfig) if path.exists() else FusionConfig()


def current() -> FusionConfig:
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = load(config_path())
    return _CURRENT


def use(config: FusionConfig | None) -> None:
    """Replace the process's configuration (tests; None: read the file again on next use)."""
    global _CURRENT
    _CURRENT = config
