"""Rich progress bars shared by the stages (sampling, training, evaluation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yields advance(k)."""
    with _progress() as p:
        task = p.add_task(description, total=total, info="")

        def advance(k: int = 1) -> None:
            p.advance(task, k)

        yield advance


def train_callback(description: str):
    """A transformers TrainerCallback: a rich bar over optimizer steps with the latest loss."""
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):
        def __init__(self):
            self.p = None

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:  # one bar for a multi-process (accelerate) job
                return
            self.p = _progress()
            self.p.start()
            self.task = self.p.add_task(description, total=state.max_steps, info="")

        def on_log(self, args, state, control, logs=None, **kw):
            if self.p and logs and "loss" in logs:
                self.p.update(self.task, info=f"loss {logs['loss']:.3f}")

        def on_step_end(self, args, state, control, **kw):
            if self.p:
                self.p.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if self.p:
                self.p.stop()

    return TrainProgress()
