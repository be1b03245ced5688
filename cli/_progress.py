"""aetk.progress.Progress drawn with Rich on stderr: one bar per stage."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


def rate_text(completed: float, elapsed: float | None, unit: str = "img") -> str:
    """Units per second over the whole elapsed time (seconds per unit when below 0.1/s)."""
    if not elapsed or not completed:
        return f"— {unit}/s"
    rate = completed / elapsed
    return f"{rate:.2f} {unit}/s" if rate >= 0.1 else f"{elapsed / completed:.1f} s/{unit}"


class _Rate(ProgressColumn):
    """Units over the whole elapsed time: outputs finish in bursts (writes are collected a
    few at a time), so Rich's windowed speed would read a burst as the rate."""

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(rate_text(task.completed, elapsed, task.fields.get("unit", "items")))


class RichProgress:
    """Each ``start`` replaces the bar of the stage before. ``transient``: the bars vanish
    at the end; ``overall_rate``: show units/s over the whole run (not Rich's window)."""

    def __init__(self, enabled: bool = True, transient: bool = True, overall_rate: bool = False):
        rate = _Rate() if overall_rate else TimeRemainingColumn()
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TaskProgressColumn(), rate, TimeElapsedColumn(), console=Console(stderr=True),
                            transient=transient, disable=not enabled)
        self.task = None
        self.started = False

    def start(self, description: str, total: int | None = None, unit: str = "items") -> None:
        if not self.started:
            self.bar.start()
            self.started = True
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(description, total=total, unit=unit)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def finish(self) -> None:
        if self.started:
            self.bar.stop()
            self.started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


__all__ = ["RichProgress", "rate_text"]
