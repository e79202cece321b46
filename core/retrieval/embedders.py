"""Embedders: an image in, one float32 vector out — the "what is similar" half of image retrieval.

* :class:`PixelEmbedder` — the course notebook's raw pixels: the photo resized to a small fixed size
  (86×128 by default) and flattened, values 0–255. Searched by L1 distance and by cosine similarity.
* :class:`DeepEmbedder` — the global-pooled features of a CNN body (an ImageNet-pretrained backbone, or the
  fine-tuned body of a finished training run), L2-normalised, searched by cosine similarity.

Every embedder has a ``key`` that changes whenever its output could change (size, weights, precision), so
an index built with one is never searched with another. Files and uploaded queries go through the same
decode path, so a dataset photo given as a query finds itself at distance 0 (similarity 1).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from core.data.decode import decode_image, decode_parallel, open_rgb, to_float
from core.errors import ConfigError, DataError
from core.lru import LockedLRU
from core.models.backbones import BACKBONES, create_model, get_backbone, pick_pretrained_backbone
from core.models.classifier import Classifier
from core.models.device import check_precision, compute_setup
from core.models.runtime import check_runtime, example_images, frozen_pass, module_fingerprint
from core.progress import ProgressFn, no_progress
from core.runs.evaluate import load_run_model
from core.runs.store import RunStore
from core.settings import Settings

PIXEL_HEIGHT, PIXEL_WIDTH = 86, 128  # the course notebook's raw-pixel size
DEEP_IMG_SIZE = 224
CHUNK = 64  # images decoded and embedded at a time (bounds memory for large collections)


@dataclass
class EmbedderConfig:
    """How images become vectors; saved with every index."""

    pixel_height: int = PIXEL_HEIGHT
    pixel_width: int = PIXEL_WIDTH
    backbone: str = "auto"  # deep features: a backbone name, or "auto" (ResNet18 if its weights are here)
    run: str = ""  # deep features from a finished training run's body (run folder or id) instead
    precision: str = "auto"  # deep features: "auto" (bf16 where native), "fp32", "bf16"
    runtime: str = "auto"  # deep features: "auto" (ONNX Runtime where measured faster here), "torch", "onnxruntime"

    def validate(self) -> EmbedderConfig:
        if not (8 <= self.pixel_height <= 512 and 8 <= self.pixel_width <= 512):
            raise ConfigError(
                f"The pixel size must be between 8 and 512 on each side, got {self.pixel_height}x{self.pixel_width}."
            )
        if self.backbone != "auto":
            get_backbone(self.backbone)
        check_precision(self.precision)
        check_runtime(self.runtime)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class Embedder:
    """Turns images (paths or file-like objects) into float32 vectors of length ``dim``."""

    kind: str
    key: str  # changes whenever the vectors could change
    dim: int
    description: str  # for people: "raw pixels 86×128", "ImageNet EfficientNet-Lite0 features"…
    held_out: Optional[List[str]] = None  # a trained embedder's test photos (never fitted on): what measures it

    def decode(self, source) -> np.ndarray:
        """One image as the uint8 array the embedder works on (raises ImageDecodeError)."""
        raise NotImplementedError

    def embed_decoded(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(n, dim)`` vectors of a batch of :meth:`decode` outputs."""
        raise NotImplementedError

    def embed_files(
        self, paths: Sequence[Path], on_progress: ProgressFn = no_progress
    ) -> Tuple[np.ndarray, List[bool]]:
        """Vectors of ``paths`` (rows of files that cannot be decoded are zero) and which ones decoded."""
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        ok: List[bool] = []
        for start in range(0, len(paths), CHUNK):
            chunk = list(paths[start : start + CHUNK])
            pixels = np.zeros((len(chunk), *self.decoded_shape), dtype=np.uint8)
            good = decode_parallel(chunk, self.decode, pixels)
            rows = [i for i, g in enumerate(good) if g]
            if rows:
                out[[start + i for i in rows]] = self.embed_decoded(pixels[rows])
            ok.extend(good)
            on_progress(start + len(chunk), len(paths), f"embedding images ({self.description})")
        return out, ok

    def embed_source(self, source) -> np.ndarray:
        """The vector ``(dim,)`` of one image (path or file-like: an upload)."""
        return self.embed_decoded(self.decode(source)[None])[0]

    @property
    def decoded_shape(self) -> Tuple[int, ...]:
        raise NotImplementedError


class PixelEmbedder(Embedder):
    """Raw pixels: resized to ``height``×``width`` (bilinear, EXIF rotation applied), flattened HWC, 0–255.

    Values stay whole numbers stored exactly in float32, so L1 distances are exact sums (no rounding ties).
    """

    kind = "pixels"

    def __init__(self, height: int = PIXEL_HEIGHT, width: int = PIXEL_WIDTH):
        self.height, self.width = height, width
        self.dim = height * width * 3
        self.key = f"pixels-{height}x{width}-v1"
        self.description = f"raw pixels {height}×{width}"

    @property
    def decoded_shape(self) -> Tuple[int, ...]:
        return (self.height, self.width, 3)

    def decode(self, source) -> np.ndarray:
        im = open_rgb(source, draft_size=2 * max(self.height, self.width))
        return np.asarray(im.resize((self.width, self.height), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)

    def embed_decoded(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1).astype(np.float32)


class DeepEmbedder(Embedder):
    """Global-pooled features of a CNN body at ``img_size`` px, L2-normalised (cosine = inner product).

    The body is frozen, so it runs as a frozen pass (:mod:`core.models.runtime`): on ONNX Runtime where that is
    measured faster here, else PyTorch (bf16 where native)."""

    kind = "deep"

    def __init__(
        self,
        model: Classifier,
        img_size: int,
        precision: str,
        identity: str,
        description: str,
        cache_dir: Optional[Path] = None,
        runtime: str = "auto",
    ):
        compute = compute_setup("auto", precision)
        model = compute.place(model.eval())
        self.img_size = img_size
        self.dim = int(model.head.in_features)
        body = torch.nn.Sequential(model.normalize, model.body)
        self.frozen = frozen_pass(
            body, example_images(img_size), compute.precision, compute.device, compute.channels_last, runtime, cache_dir
        )
        computed = self.frozen.runtime if self.frozen.runtime != "torch" else f"torch-{self.frozen.precision}"
        self.key = f"deep-{identity}-{module_fingerprint(model.body)}-{img_size}px-{computed}"
        self.description = description
        self._lock = threading.Lock()  # one forward pass at a time (app sessions share the embedder)

    @property
    def decoded_shape(self) -> Tuple[int, ...]:
        return (self.img_size, self.img_size, 3)

    def decode(self, source) -> np.ndarray:
        return decode_image(source, self.img_size)  # exactly as training resizes

    def embed_decoded(self, batch: np.ndarray) -> np.ndarray:
        x = to_float(torch.from_numpy(batch).permute(0, 3, 1, 2))
        with self._lock:
            f = self.frozen(x)
        return torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------ factory

_loaded: LockedLRU[DeepEmbedder] = LockedLRU(maxsize=3)  # models kept loaded between calls


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _deep_embedder(cfg: EmbedderConfig, settings: Settings) -> DeepEmbedder:
    if cfg.run:
        run = RunStore(settings.runs_dir).get(cfg.run)
        if run.status == "corrupt":
            raise DataError(f"Run {cfg.run} cannot be read: {run.error}")
        if not run.has_checkpoint:
            raise DataError(f"Run {run.run_id} has no checkpoint yet (best.pt): it has not finished an epoch.")
        cache_key = ("run", str(run.dir.resolve()), _file_stamp(run.dir / "best.pt"), cfg.precision, cfg.runtime)

        def build() -> DeepEmbedder:
            return DeepEmbedder(
                load_run_model(run),
                int(run.config["data"]["img_size"]),
                cfg.precision,
                cache_dir=settings.cache_dir,
                runtime=cfg.runtime,
                identity=f"run-{run.run_id}",
                description=f"features of run {run.run_id} ({run.config['model']['regime']})",
            )
    else:
        name = cfg.backbone if cfg.backbone != "auto" else pick_pretrained_backbone(settings)[0]
        cache_key = ("imagenet", name, str(settings.resnet18_weights), cfg.precision, cfg.runtime)

        def build() -> DeepEmbedder:
            model, _source = create_model(name, 1, pretrained=True, settings=settings)
            return DeepEmbedder(
                model,
                DEEP_IMG_SIZE,
                cfg.precision,
                cache_dir=settings.cache_dir,
                runtime=cfg.runtime,
                identity=f"imagenet-{name}",
                description=f"ImageNet {BACKBONES[name].display.split(' (')[0]} features",
            )

    return _loaded.get_or_build(cache_key, build)


def get_embedder(kind: str, cfg: Optional[EmbedderConfig] = None, settings: Optional[Settings] = None) -> Embedder:
    """The embedder of ``kind`` ("pixels" or "deep"); deep ones (models) are kept loaded between calls."""
    cfg = (cfg or EmbedderConfig()).validate()
    if kind == "pixels":
        return PixelEmbedder(cfg.pixel_height, cfg.pixel_width)
    if kind == "deep":
        return _deep_embedder(cfg, settings or Settings.from_env())
    raise ConfigError(f"Unknown embedder '{kind}'. Choose 'pixels' or 'deep'.")
