"""Evaluate a saved run: on exactly its own test split, or on another folder of the same classes."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from core.data.imagefolder import scan_image_folder
from core.data.sources import resolve_source
from core.data.splits import SplitTensors
from core.data.tensor_cache import load_images
from core.errors import DataError
from core.lru import LockedLRU
from core.models.classifier import Classifier
from core.models.device import compute_setup
from core.models.inference import evaluate_model
from core.models.regimes import create_run_model
from core.progress import ProgressFn, no_progress
from core.runs.predictions import PREDICTIONS_FILE, SplitPredictions, load_predictions, save_predictions
from core.runs.store import RunRecord, load_manifest, load_run
from core.settings import Settings


def load_run_model(run: RunRecord) -> Classifier:
    """The run's best checkpoint in a model of its architecture (no ImageNet weights needed)."""
    if not run.has_checkpoint:
        raise DataError(f"Run {run.run_id} has no checkpoint (best.pt): it stopped before finishing an epoch.")
    classes, size = run_classes_and_size(run)
    m = _section(run, "model")
    model, _ = create_run_model(m.get("regime", ""), m.get("backbone", ""), len(classes), size, pretrained=False)
    try:
        state = torch.load(run.dir / "best.pt", map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except Exception as e:  # torch raises many kinds (EOFError, UnpicklingError, RuntimeError, ...) for one cause
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"Run {run.run_id}'s checkpoint best.pt cannot be read ({reason}). It was damaged after "
                        f"training; train the run again.") from e  # fmt: skip
    return model.eval()


_models: LockedLRU[Classifier] = LockedLRU(maxsize=8)  # the app's pages share them (Compare, Look inside)


def cached_run_model(run: RunRecord) -> Classifier:
    """:func:`load_run_model`, kept loaded (a few at a time) until the run's checkpoint changes. Shared between
    threads: use it for inference only, or under a lock (:mod:`core.explain.cam` hooks its layers)."""
    path = run.dir / "best.pt"
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return load_run_model(run)  # says there is no checkpoint
    return _models.get_or_build((str(run.dir.resolve()), stamp), lambda: load_run_model(run))


def _section(run: RunRecord, name: str) -> Dict:
    """A section of the run's config, or {} when it is missing or not an object."""
    value = run.config.get(name)
    return value if isinstance(value, dict) else {}


def run_classes_and_size(run: RunRecord) -> Tuple[List[str], int]:
    """The classes a run was trained on and its image size, from its ``config.json``; a :class:`DataError`
    naming the file when they are missing or of the wrong kind."""
    classes = _section(run, "resolved").get("classes")
    size = _section(run, "data").get("img_size")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DataError(f"Run {run.run_id}'s config.json does not list the classes it was trained on "
                        f"(resolved.classes); it cannot be evaluated. Train the run again.")  # fmt: skip
    if not isinstance(size, int) or size < 1:
        raise DataError(f"Run {run.run_id}'s config.json has no valid image size (data.img_size); it cannot be "
                        f"evaluated. Train the run again.")  # fmt: skip
    return classes, size


def evaluate_run(
    run_dir: Path,
    data: Optional[str] = None,
    settings: Optional[Settings] = None,
    on_progress: ProgressFn = no_progress,
) -> Dict:
    """``{"accuracy", "n", "per_class", "confusion", ...}`` of a run's best checkpoint.

    Without ``data``: on the run's own test split (its saved manifest). With ``data`` (a source as for
    training: folder, .zip, "sample", "flowers"): on every image of that folder, whose class folders must
    be among the run's classes.
    """
    return evaluate_run_detailed(run_dir, data, settings, on_progress)[0]


def evaluate_run_detailed(
    run_dir: Path,
    data: Optional[str] = None,
    settings: Optional[Settings] = None,
    on_progress: ProgressFn = no_progress,
) -> Tuple[Dict, SplitPredictions]:
    """:func:`evaluate_run`'s result plus the prediction for every image."""
    settings = settings or Settings.from_env()
    run = load_run(Path(run_dir))
    if run.status == "corrupt":
        raise DataError(f"Run folder {run_dir} cannot be read: {run.error}")
    classes, size = run_classes_and_size(run)
    if data is None:
        manifest = load_manifest(run.dir)
        root = Path(manifest["root"])
        items = manifest["splits"]["test"]
        missing = [f for f, _ in items if not (root / f).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of the run's {len(items)} test images are no longer at {root} "
                f"(e.g. {missing[0]}). Restore them, or evaluate on a folder with --data PATH."
            )
        files, labels = [f for f, _ in items], [int(lab) for _, lab in items]
        source = "own test split"
    else:
        root = resolve_source(data, settings, on_progress)
        listing = scan_image_folder(root, min_classes=1)
        unknown = [c for c in listing.classes if c not in classes]
        if unknown:
            raise DataError(
                f"Classes in {root} that the run was not trained on: {', '.join(unknown)}. "
                f"The run knows: {', '.join(classes)}."
            )
        files = list(listing.files)
        labels = [classes.index(listing.classes[lab]) for lab in listing.labels]
        source = str(root)
    decoded = load_images(root, classes, files, labels, size, settings.cache_dir, on_progress)
    if len(decoded) == 0:
        raise DataError(f"None of the images in {root} could be read.")
    compute = compute_setup(channels_last=False)
    model = compute.place(load_run_model(run))
    result = evaluate_model(model, SplitTensors(decoded.images, decoded.labels), 64, compute.precision, compute.device)
    preds = SplitPredictions.from_tensors(root, classes, decoded.files, decoded.labels, result.probabilities)
    summary = {
        "run_id": run.run_id,
        "data": source,
        "accuracy": result.accuracy,
        "n": result.n,
        "per_class": preds.per_class_accuracy(),
        "confusion": preds.confusion(),
        "classes": classes,
        "skipped_files": len(decoded.skipped),
        "seen_in_training": seen_in_training(run, root, decoded.files),
    }
    return summary, preds


def seen_in_training(run: RunRecord, root: Path, files) -> Dict[str, int]:
    """How many of ``files`` (relative to ``root``) the run trained on (``train``) or picked its checkpoint
    with (``val``): an accuracy on them is optimistic. Zero unless ``root`` is the run's own data folder."""
    try:
        manifest = load_manifest(run.dir)
    except DataError:
        return {"train": 0, "val": 0}
    if Path(manifest["root"]).resolve() != Path(root).resolve():
        return {"train": 0, "val": 0}
    chosen = set(files)
    return {split: sum(1 for f, _ in manifest["splits"].get(split, []) if f in chosen) for split in ("train", "val")}


def run_test_predictions(run: RunRecord, settings=None) -> SplitPredictions:
    """The run's predictions on its own test split: the saved ones when they are at least as new as its
    checkpoint, else computed from the checkpoint (and saved, unless the run is still training).

    Raises :class:`DataError` when the run has no checkpoint or its test images are gone.
    """
    saved_path, checkpoint = Path(run.dir) / PREDICTIONS_FILE, Path(run.dir) / "best.pt"
    saved = load_predictions(run.dir)
    if saved is not None and (not checkpoint.exists() or saved_path.stat().st_mtime >= checkpoint.stat().st_mtime):
        return saved
    _, preds = evaluate_run_detailed(run.dir, None, settings)
    if run.status != "running":  # a running run's checkpoint may still change
        save_predictions(run.dir, preds)
    return preds
