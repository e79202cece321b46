"""One training run end to end: data → model → regime → engine → run store → test evaluation.

:func:`train_run` is what the CLI and the app call. Progress goes to ``on_event``; the run's files are
written as it goes (see :mod:`core.runs.store`); ``should_stop`` is polled every batch.
"""

from __future__ import annotations

import platform
import time
import traceback
from typing import Dict, Optional

import torch

from core.errors import TransferLabError
from core.models.device import configure_threads, cpu_isa, cpu_model
from core.models.inference import StopFn, never_stop
from core.models.regimes import apply_regime, create_run_model, model_name
from core.runs.predictions import SplitPredictions, save_predictions
from core.runs.store import RunStore, RunWriter
from core.settings import Settings, usable_cpus
from core.training.config import RunConfig
from core.training.dataset import PreparedData, prepare_data
from core.training.engine import Trainer
from core.training.events import BatchEnd, EpochEnd, EventFn, PhaseProgress, RunEnd, RunStarted, no_events

PROGRESS_EVERY_SECONDS = 1.0
CHECKPOINT_EVERY_SECONDS = 2.0  # a new best epoch is saved at most this often while training, and at the end


def progress_dict(event) -> Dict:
    """The live-progress record of a batch or phase event, as saved in ``progress.json``."""
    if isinstance(event, BatchEnd):
        return {
            "phase": "train",
            "epoch": event.epoch,
            "epochs": event.epochs,
            "batch": event.batch,
            "batches": event.batches,
            "loss": event.loss,
            "images_per_sec": event.images_per_sec,
            "eta_seconds": event.eta_seconds,
        }
    return {"phase": event.phase, "done": event.done, "total": event.total, "message": event.message}


def build_summary(writer: RunWriter, cfg: RunConfig, status: str, **fields) -> Dict:
    return {
        "run_id": writer.run_id,
        "run_dir": str(writer.dir),
        "status": status,
        "regime": cfg.model.regime,
        "backbone": model_name(cfg.model.regime, cfg.model.backbone),  # "mlp" for the MLP: it uses no backbone
        "dataset": cfg.data.source,
        "epochs": cfg.train.epochs,
        "img_size": cfg.data.img_size,
        "augment": cfg.train.augment,
        **fields,
    }


def train_run(
    cfg: RunConfig,
    settings: Optional[Settings] = None,
    on_event: EventFn = no_events,
    should_stop: StopFn = never_stop,
    data: Optional[PreparedData] = None,
    writer: Optional[RunWriter] = None,
) -> Dict:
    """Train one run and return its summary (also saved as ``summary.json``).

    Without ``writer``, raises :class:`~core.errors.TransferLabError` for bad configuration, data or weights
    *before* a run folder is created, so a mistake leaves nothing half-made behind. With ``writer`` (a queued
    run the training worker claimed: its folder exists already), such a failure is also written to its summary,
    so the queue shows why the run failed. The caller releases ``writer``; a run this creates is released here.
    """
    t_start = time.perf_counter()
    settings = settings or Settings.from_env()
    last_progress = [0.0]

    def write_progress(event) -> None:  # at most once a second, and at the end of each epoch
        now = time.monotonic()
        last = isinstance(event, BatchEnd) and event.batch == event.batches
        if writer is not None and (now - last_progress[0] >= PROGRESS_EVERY_SECONDS or last):
            last_progress[0] = now
            writer.write_progress(progress_dict(event))

    def data_progress(done, total, message) -> None:
        event = PhaseProgress("data", done, total, message)
        write_progress(event)
        on_event(event)

    try:
        cfg.validate()
        configure_threads(cfg.train.num_threads)
        if data is None:
            data = prepare_data(cfg.data, settings, on_progress=data_progress)
        torch.manual_seed(cfg.train.seed)
        model, weights_source = create_run_model(
            cfg.model.regime, cfg.model.backbone, len(data.classes), cfg.data.img_size, settings
        )
        split = apply_regime(model, cfg.model.regime, cfg.model.backbone, cfg.model.freeze)
    except BaseException as e:
        if writer is not None:  # a queued run: its folder must say why it never started
            error = str(e) if isinstance(e, TransferLabError) else f"{type(e).__name__}: {e}"
            writer.write_summary(build_summary(writer, cfg, "failed", error=error))
            on_event(RunEnd("failed", {}))
        raise
    counts = split.counts

    own_writer = writer is None
    writer = writer or RunStore(settings.runs_dir).create(cfg.model.regime, cfg.model.backbone)
    try:
        sizes = {s: len(t) for s, t in data.splits.items()}
        writer.write_config(
            {
                **cfg.to_dict(),
                "resolved": {
                    "classes": list(data.classes),
                    "data_root": str(data.root),
                    "weights_source": weights_source,
                    "frozen_tensors": counts.frozen_tensors,
                    "trainable_params": counts.trainable,
                    "frozen_params": counts.frozen,
                    "split_sizes": sizes,
                    "skipped_files": len(data.skipped),
                    "torch": torch.__version__,
                    "machine": platform.machine(),
                    "isa": cpu_isa(),
                    "cpu": cpu_model(),  # the machine, as the report shows it (older runs lack it)
                    "cores": usable_cpus(),
                    "python": platform.python_version(),
                },
            }
        )
        writer.write_manifest(data.manifest)
        on_event(RunStarted(writer.run_id, str(writer.dir)))
        checkpoint = {"saved_at": -1e9, "pending": False}  # a best epoch not yet on disk

        def save_checkpoint() -> None:
            writer.save_checkpoint(trainer.best["state"])
            checkpoint.update(saved_at=time.monotonic(), pending=False)

        def listener(event) -> None:
            if isinstance(event, EpochEnd):
                writer.append_metrics(event.metrics())
                if event.is_best:
                    checkpoint["pending"] = True
                # cheap epochs (a head on cached features) would otherwise rewrite best.pt many times a second
                if checkpoint["pending"] and (
                    time.monotonic() - checkpoint["saved_at"] >= CHECKPOINT_EVERY_SECONDS or event.epoch == event.epochs
                ):
                    save_checkpoint()
            if isinstance(event, (BatchEnd, PhaseProgress)):
                write_progress(event)
            on_event(event)

        common = dict(
            trainable_params=counts.trainable,
            frozen_params=counts.frozen,
            total_params=counts.total,
            weights_source=weights_source,
            classes=list(data.classes),
            split_sizes=sizes,
            skipped_files=len(data.skipped),
        )
        try:
            trainer = Trainer(model, split, cfg.train, listener, should_stop, cache_dir=settings.cache_dir)
            result = trainer.fit(data.splits["train"], data.splits["val"])
            if checkpoint["pending"]:
                save_checkpoint()
            fields = dict(
                epochs_done=result.epochs_done,
                best_epoch=result.best_epoch,
                best_val_loss=result.best_val_loss if result.epochs_done else None,
                best_val_acc=result.best_val_acc if result.epochs_done else None,
                train_seconds=round(result.train_seconds, 3),
                seconds_per_epoch=(round(result.train_seconds / result.epochs_done, 3) if result.epochs_done else None),
                setup=result.setup,
                **common,
            )
            if result.status == "finished":
                on_event(PhaseProgress("test", 0, sizes["test"], "evaluating the best epoch on the test split"))
                test = trainer.evaluate(data.splits["test"])
                preds = SplitPredictions.from_tensors(
                    data.manifest["root"],
                    data.classes,
                    [f for f, _ in data.manifest["splits"]["test"]],
                    data.splits["test"].labels,
                    test.probabilities,
                )
                save_predictions(writer.dir, preds)
                fields.update(
                    test_acc=test.accuracy,
                    test_loss=test.loss,
                    n_test=test.n,
                    per_class=preds.per_class_accuracy(),
                    confusion=preds.confusion(),
                )
            else:
                fields.update(test_acc=None, n_test=sizes["test"])
            summary = build_summary(
                writer, cfg, result.status, wall_seconds=round(time.perf_counter() - t_start, 3), **fields
            )
        except BaseException as e:  # the run folder must say what happened, whatever happened
            if checkpoint["pending"]:
                save_checkpoint()
            summary = build_summary(
                writer,
                cfg,
                "failed",
                error=f"{type(e).__name__}: {e}",
                traceback=traceback.format_exc(limit=8),
                **common,
            )
            writer.write_summary(summary)
            on_event(RunEnd("failed", summary))
            raise
        writer.write_summary(summary)
        on_event(RunEnd(summary["status"], summary))
        return summary
    finally:
        if own_writer:
            writer.release()
