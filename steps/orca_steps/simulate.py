"""Step ``simulate``: write a simulated night (input tree, cal tables, models, truth) for tests and demos."""
from __future__ import annotations

from pydantic import BaseModel, Field

from .logs import step_timer
from .sim import SimConfig, simulate_night


class Options(SimConfig):
    out_dir: str = Field(description="folder to write input/, refs/ and truth.json into")


class Result(BaseModel):
    input_root: str
    refs_dir: str
    truth: str
    n_ms: int


def run(options: Options) -> Result:
    with step_timer("simulate"):
        night = simulate_night(options.out_dir, SimConfig(**options.model_dump(exclude={"out_dir"})))
    return Result(input_root=str(night.input_root), refs_dir=str(night.refs_dir),
                  truth=str(night.out_dir / "truth.json"), n_ms=sum(map(len, night.ms_paths.values())))
