"""A progress bar over the named stages of a long job (rich), or nothing when disabled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StageBar:
    """A rich bar that advances through named stages and shows the elapsed time.

    Args:
      stages: the stage names, in order; the bar shows the current one.
      enabled: False gives a bar that prints nothing (``--quiet`` / ``progress=False``).

    Use ``bar.next()`` when a stage starts (the first call starts the bar) and ``bar.close()``
    at the end (also on errors: ``try``/``finally``).
    """

    def __init__(self, stages: Sequence[str], *, enabled: bool = True) -> None:
        self.stages = list(stages)
        self.index = -1
        self._progress: Any = None
        self._task: Any = None
        if enabled and self.stages:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )

    def next(self) -> None:
        """Finish the current stage (if any) and start the next one."""
        self.index += 1
        if self._progress is None or self.index >= len(self.stages):
            return
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.stages[0], total=len(self.stages))
        self._progress.update(self._task, completed=self.index, description=self.stages[self.index])

    def close(self) -> None:
        """Mark every stage done and remove the live display."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=len(self.stages), description="done")
            self._progress.stop()
            self._task = None
