"""The round's stages, in order: propose -> sample -> verify -> train -> evaluate.

Each module here is one stage: `stage(ctx: RunContext, r: int) -> StageResult` (see
loop.context). The round runner (loop.runner) runs them in `STAGES` order, skips a stage
whose step is done, and each stage commits its outputs with its step mark through
`ctx.commit`. Round 0 holds only the baseline evaluation.
"""

from __future__ import annotations

from loop.context import Stage
from loop.stages import evaluate, propose, sample, train, verify

STAGES: dict[str, Stage] = {
    "propose": propose.stage,
    "sample": sample.stage,
    "verify": verify.stage,
    "train": train.stage,
    "evaluate": evaluate.stage,
}
STAGE_NAMES: list[str] = list(STAGES)
