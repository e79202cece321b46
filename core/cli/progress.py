"""What a long command shows on stderr: tqdm bars for engine events and progress callbacks, and Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from tqdm import tqdm

from core.training.events import BatchEnd, EpochEnd, PhaseProgress


class TqdmListener:
    """Turns engine events (:mod:`core.training.events`) and progress callbacks into tqdm bars on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.key = None

    def _bar(self, key, total, desc, unit):
        if self.key != key:
            self.close()
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
            self.key = key
        return self.bar

    def __call__(self, event) -> None:
        if self.quiet:
            return
        if isinstance(event, PhaseProgress) and event.total and event.phase != "test":
            bar = self._bar(("phase", event.phase, event.message.split("(")[0]), event.total, event.message, "it")
            bar.n = event.done
            bar.refresh()
        elif isinstance(event, BatchEnd):
            bar = self._bar(("epoch", event.epoch), event.batches, f"epoch {event.epoch}/{event.epochs}", "batch")
            bar.n = event.batch
            bar.set_postfix(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_sec:.0f}")
        elif isinstance(event, EpochEnd):
            self.close()
            best = " *best*" if event.is_best else ""
            print(
                f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.3f} acc {event.train_acc:.3f} | "
                f"val loss {event.val_loss:.3f} acc {event.val_acc:.3f} | {event.seconds:.1f}s{best}",
                file=sys.stderr,
            )

    def progress(self, done: int, total, message: str) -> None:
        """A :data:`core.progress.ProgressFn` drawing one bar per message."""
        if self.quiet or not total:
            return
        bar = self._bar(("progress", message), total, message, "it")
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.key = None


class CtrlC:
    """First Ctrl-C: stop after the current batch and keep the run as interrupted; the second aborts."""

    def __init__(self):
        self.stop = threading.Event()

    def __enter__(self) -> threading.Event:
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self.stop

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print("\nstopping after this batch (Ctrl-C again to abort)...", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._old)
