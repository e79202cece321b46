"""Per-image predictions of a run: on its test split (``predictions.json``) or on an uploaded photo.

Training saves the test split's predictions next to the run (:func:`save_predictions`), so the Compare
page can show a confusion matrix and the misclassified photos without loading a model. Older or
interrupted runs get them computed from their best checkpoint on first use
(:func:`core.runs.evaluate.run_test_predictions`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from core.data.decode import ImageDecodeError, open_rgb, resize_square, to_float, unusable_photo
from core.files import write_json_atomic
from core.models.classifier import Classifier

PREDICTIONS_FILE = "predictions.json"
PROB_DECIMALS = 5  # probabilities are saved rounded: a true class at 0.0 counts as the smallest saved value
PROB_FLOOR = 10.0**-PROB_DECIMALS


@dataclass
class SplitPredictions:
    """What a model predicted for each image of a split: ``files[i]`` (relative to ``root``) has true
    class ``labels[i]``, predicted class ``predictions[i]``, with class probabilities ``probabilities[i]``."""

    root: str
    classes: List[str]
    files: List[str]
    labels: List[int]
    predictions: List[int]
    probabilities: List[List[float]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def accuracy(self) -> float:
        return sum(p == t for p, t in zip(self.predictions, self.labels)) / self.n if self.n else 0.0

    def confusion(self) -> List[List[int]]:
        """``[true][predicted]`` counts."""
        k = len(self.classes)
        cm = [[0] * k for _ in range(k)]
        for t, p in zip(self.labels, self.predictions):
            cm[t][p] += 1
        return cm

    def per_class_accuracy(self) -> Dict[str, Optional[float]]:
        cm = self.confusion()
        return {c: (cm[i][i] / sum(cm[i]) if sum(cm[i]) else None) for i, c in enumerate(self.classes)}

    def images(
        self, true: Optional[str] = None, predicted: Optional[str] = None, wrong_only: bool = False
    ) -> List[Dict]:
        """The images of one confusion cell (``true`` and/or ``predicted`` class; ``None`` is any), or with
        ``wrong_only`` just the misclassified ones; most confident first."""
        t_idx = self.classes.index(true) if true is not None else None
        p_idx = self.classes.index(predicted) if predicted is not None else None
        out = []
        for i, (t, p) in enumerate(zip(self.labels, self.predictions)):
            if (wrong_only and t == p) or (t_idx is not None and t != t_idx) or (p_idx is not None and p != p_idx):
                continue
            conf = self.probabilities[i][p] if self.probabilities else None
            out.append(
                {
                    "file": self.files[i],
                    "path": str(Path(self.root) / self.files[i]),
                    "true": self.classes[t],
                    "predicted": self.classes[p],
                    "confidence": conf,
                }
            )
        return sorted(out, key=lambda m: -(m["confidence"] or 0.0))

    def mistakes(self) -> List[Dict]:
        """Every misclassified image, most confident mistakes first."""
        return self.images(wrong_only=True)

    def hardest(self, n: int = 12) -> List[Dict]:
        """The ``n`` images with the highest loss (cross-entropy, ``-ln p(true class)``), highest first, as
        :meth:`images` gives them plus ``loss`` and ``true_prob``: fast.ai's "top losses". Mostly confident
        mistakes, and right answers given with little confidence. Needs the probabilities (saved since they
        were added; older files have none: then ``[]``)."""
        if not self.probabilities:
            return []
        true_probs = [max(self.probabilities[i][t], PROB_FLOOR) for i, t in enumerate(self.labels)]
        order = sorted(range(self.n), key=lambda i: true_probs[i])[:n]
        return [
            {
                "file": self.files[i],
                "path": str(Path(self.root) / self.files[i]),
                "true": self.classes[self.labels[i]],
                "predicted": self.classes[self.predictions[i]],
                "confidence": self.probabilities[i][self.predictions[i]],
                "true_prob": true_probs[i],
                "loss": -math.log(true_probs[i]),
            }
            for i in order
        ]

    @classmethod
    def from_tensors(
        cls, root, classes: Sequence[str], files: Sequence[str], labels: torch.Tensor, probabilities: torch.Tensor
    ) -> SplitPredictions:
        return cls(
            root=str(root),
            classes=list(classes),
            files=list(files),
            labels=[int(x) for x in labels],
            predictions=[int(x) for x in probabilities.argmax(1)],
            probabilities=[[round(float(p), PROB_DECIMALS) for p in row] for row in probabilities],
        )


def save_predictions(run_dir: Path, preds: SplitPredictions) -> None:
    write_json_atomic(Path(run_dir) / PREDICTIONS_FILE, asdict(preds))


def load_predictions(run_dir: Path) -> Optional[SplitPredictions]:
    """The saved test-split predictions of a run, or None when it has none (or they cannot be read)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    try:
        return SplitPredictions(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


PHOTO_PX = 2048  # a photo is shown at most 640 px wide and predicted at most 512 px: JPEGs decode at >= this


def load_photo(source, name: str = "") -> Image.Image:
    """An uploaded or chosen photo (path or file-like; JPEG, PNG, WebP…; EXIF rotation applied), as RGB. A
    large JPEG decodes at a reduced scale (at least :data:`PHOTO_PX` on its short side), so a 100-megapixel
    camera photo costs megabytes, not a gigabyte.

    Raises :class:`DataError` saying plainly why a file cannot be used.
    """
    try:
        return open_rgb(source, draft_size=PHOTO_PX)
    except ImageDecodeError as e:
        raise unusable_photo(e, name) from e


@torch.inference_mode()
def predict_image(
    model: Classifier, classes: Sequence[str], img_size: int, photo: Image.Image, k: int = 3
) -> List[Tuple[str, float]]:
    """The top-``k`` ``(class, probability)`` of a photo (from :func:`load_photo`), resized as in training."""
    x = to_float(torch.from_numpy(resize_square(photo, img_size)).permute(2, 0, 1).unsqueeze(0))
    device = next(model.parameters()).device
    probs = model.eval()(x.to(device)).float().softmax(1)[0].cpu()
    top = probs.topk(min(k, len(classes)))
    return [(classes[int(i)], float(p)) for p, i in zip(top.values, top.indices)]
