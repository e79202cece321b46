"""The Search page's helpers (no streamlit here: the page keeps the widgets and the caching).

Where deep features can come from, a dataset's files per class, framed thumbnails of neighbours and their
sizes, the text of the indexes' progress bar, the per-dataset tag in the page's widget keys, and the trail
of earlier queries ("more like this" and back).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from PIL import ImageOps

from core.app.photos import KeptPhoto
from core.data.decode import open_rgb
from core.data.imagefolder import ImageFolderListing, scan_image_folder
from core.models.backbones import BACKBONES, pick_pretrained_backbone
from core.retrieval.embedders import EmbedderConfig
from core.runs.compare import run_label
from core.runs.listing import shared_listing
from core.settings import Settings

FRAME_PX = 6  # the coloured frame around a neighbour's thumbnail
# the thumbnail sizes a user can choose: {name: (thumbnails per row in a method's column, pixels a side)}
THUMB_SIZES: Dict[str, Tuple[int, int]] = {"Small": (3, 150), "Medium": (2, 240), "Large": (1, 420)}
QUERY_KEY = "search_query"  # the session key of the kept :class:`KeptPhoto`
TRAIL_KEY = "search_trail"  # the session key of the :class:`QueryTrail`
TRAIL_LENGTH = 6  # earlier queries kept to step back to


def deep_sources(settings: Settings) -> Dict[str, Tuple[str, EmbedderConfig]]:
    """Where deep features can come from, ``{key: (label, embedder config)}``: the ImageNet backbones whose
    weights are on this machine (else the default one, which downloads its weights), then every finished
    run that kept a checkpoint (its fine-tuned network)."""
    out = {}
    for name, spec in BACKBONES.items():
        if spec.weights_source(settings):
            out[f"imagenet:{name}"] = (
                f"ImageNet {spec.display.split(' (')[0]} (pretrained)",
                EmbedderConfig(backbone=name),
            )
    if not out:  # nothing on disk: the default backbone downloads its weights
        name = pick_pretrained_backbone(settings)[0]
        out[f"imagenet:{name}"] = (
            f"ImageNet {BACKBONES[name].display} (downloads weights)",
            EmbedderConfig(backbone=name),
        )
    for run in shared_listing(settings.runs_dir).runs(max_age=0):
        if run.status == "finished" and run.has_checkpoint:
            out[f"run:{run.run_id}"] = (f"Fine-tuned run: {run_label(run)}", EmbedderConfig(run=str(run.dir)))
    return out


def files_by_class(listing: Union[ImageFolderListing, str, Path]) -> Dict[str, List[str]]:
    """``{class: [relative file, ...]}`` in the listing's order, every class present (even an empty one).
    ``listing``: an :class:`ImageFolderListing`, or a dataset folder to scan."""
    if not isinstance(listing, ImageFolderListing):
        listing = scan_image_folder(Path(listing), min_classes=1)
    out: Dict[str, List[str]] = {c: [] for c in listing.classes}
    for f, lab in zip(listing.files, listing.labels):
        out[listing.classes[lab]].append(f)
    return out


def framed_thumbnail(path: Union[str, Path], colour: str, size: int, border: int = FRAME_PX) -> bytes:
    """A JPEG of the photo at ``path`` (EXIF rotation respected) padded with white to ``size`` × ``size``,
    inside a ``border``-pixel frame of ``colour``: ``size + 2 * border`` pixels a side. Raises
    :class:`~core.data.decode.ImageDecodeError` when the file cannot be read as a photo."""
    im = ImageOps.pad(open_rgb(path), (size, size), color="white")
    im = ImageOps.expand(im, border=border, fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def root_tag(root: Union[str, Path]) -> str:
    """A short tag naming a dataset folder in widget keys, so that switching datasets resets them."""
    return hashlib.sha1(str(root).encode()).hexdigest()[:8]


def class_key(root: Union[str, Path]) -> str:
    """The key of the Search page's class picker for the dataset at ``root``."""
    return f"search_class-{root_tag(root)}"


def file_key(root: Union[str, Path], cls: str) -> str:
    """The key of the Search page's photo picker for class ``cls`` of the dataset at ``root``."""
    return f"search_file-{root_tag(root)}-{cls}"


def default_thumb_size(k: int) -> str:
    """The thumbnail size shown for ``k`` neighbours until the user chooses one: larger when they are few."""
    return "Medium" if k <= 8 else "Small"


def build_progress(
    step: int,
    steps: int,
    label: str,
    done: int,
    total: Optional[int],
    message: str,
    left: str = "",
    unit: str = "photos",
):
    """``(fraction, text)`` of the one progress bar over ``steps`` builds one after another, during step
    ``step`` (from 1), named ``label``, which reports ``done`` of ``total`` ``unit`` with ``message``; ``left``:
    the time left in this step (:meth:`core.progress.Pace.time_left`), ``""`` when unknown."""
    part = min(1.0, done / total) if total else 0.0
    text = f"Step {step}/{steps}, {label}: {message}"
    if total:
        text += f" — {done:,} / {total:,} {unit}"
    if left:
        text += f" · about {left} left" + (" in this step" if step < steps else "")
    return (step - 1 + part) / steps, text


@dataclass(frozen=True)
class QueryTrail:
    """The queries searched before the current one, oldest first: a breadcrumb to step back along. A new
    query pushes the one it replaces (a photo already on the trail moves to its end: no repeats); stepping
    back to an earlier query drops it and everything after it, as a browser's back button does."""

    earlier: Tuple[KeptPhoto, ...] = ()
    current: Optional[KeptPhoto] = None

    def visit(self, kept: Optional[KeptPhoto], keep: int = TRAIL_LENGTH) -> QueryTrail:
        """The trail once ``kept`` is the query (unchanged when it already is: the same photo, whatever its
        class label says)."""
        if kept is None or (self.current is not None and self.current.tag == kept.tag):
            return QueryTrail(self.earlier, kept if kept is not None else self.current)
        earlier = self.earlier
        if self.current is not None:
            earlier = tuple(p for p in earlier if p.tag != self.current.tag) + (self.current,)
        earlier = tuple(p for p in earlier if p.tag != kept.tag)[-keep:]
        return QueryTrail(earlier, kept)

    def back_to(self, i: int) -> QueryTrail:
        """The trail once the ``i``-th earlier query (from 0, oldest first; -1 for the last) is the query."""
        i = range(len(self.earlier))[i]
        return QueryTrail(self.earlier[:i], self.earlier[i])
