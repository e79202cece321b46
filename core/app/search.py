"""The Search page's helpers (no streamlit here: the page keeps the widgets and the caching).

Where deep features can come from, a dataset's files per class, framed thumbnails of neighbours and their
sizes, the query kept across dataset changes, the text of the indexes' progress bar, and the per-dataset tag
in the page's widget keys.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from PIL import ImageOps

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
QUERY_KEY = "search_query"  # the session key of the kept :class:`KeptQuery`


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


@dataclass(frozen=True)
class KeptQuery:
    """The photo the Search page searches with, kept in the session apart from the widgets that chose it: a
    widget's state is dropped by any run that does not draw it (e.g. while the sidebar has no dataset), and an
    upload lives in its widget. Either an upload's bytes or a photo of the dataset it was chosen in; ``root``
    and ``dataset`` (its label) say where it was chosen, so that another dataset can search with it too."""

    name: str
    root: str
    dataset: str
    tag: str  # tells one query from another (the truth picker's key)
    data: Optional[bytes] = None  # an upload
    rel: Optional[str] = None  # a dataset photo, relative to ``root``
    truth: Optional[str] = None  # what is in the photo, if known

    @classmethod
    def upload(cls, name: str, data: bytes, root: Union[str, Path], dataset: str) -> KeptQuery:
        tag = hashlib.sha1(data).hexdigest()[:12]
        return cls(name=name, root=str(root), dataset=dataset, tag=tag, data=data)

    @classmethod
    def dataset_photo(cls, root: Union[str, Path], rel: str, label: str, dataset: str) -> KeptQuery:
        """The photo ``rel`` (of class ``label``) in the dataset at ``root``."""
        tag = hashlib.sha1(f"{root}|{rel}".encode()).hexdigest()[:12]
        return cls(name=Path(rel).name, root=str(root), dataset=dataset, tag=tag, rel=rel, truth=label)

    @property
    def uploaded(self) -> bool:
        return self.data is not None

    def source(self) -> Union[io.BytesIO, Path]:
        """What to search with: the upload's bytes, or the dataset photo's path."""
        return io.BytesIO(self.data) if self.uploaded else Path(self.root) / self.rel

    def readable(self) -> bool:
        """An upload always is; a dataset photo while its file is there."""
        return self.uploaded or (Path(self.root) / self.rel).is_file()

    def is_from(self, root: Union[str, Path]) -> bool:
        return self.root == str(root)

    def with_truth(self, truth: Optional[str]) -> KeptQuery:
        return replace(self, truth=truth or None)

    def truth_in(self, classes: Sequence[str]) -> Optional[str]:
        """Its class when that is one of ``classes`` (a class of the dataset searched), else None."""
        return self.truth if self.truth in classes else None

    def note(self, root: Union[str, Path], classes: Sequence[str]) -> str:
        """What a user should know when it came from another dataset than the one at ``root``; ``""`` if not."""
        if self.is_from(root):
            return ""
        where = (
            f"was uploaded while the dataset **{self.dataset}** was chosen"
            if self.uploaded
            else f"comes from the dataset **{self.dataset}**"
        )
        out = f"This photo {where}; it is now searched in this one."
        if self.truth and self.truth not in classes:
            out += f" Its class, *{self.truth}*, is not one of this dataset's classes."
        return out


def build_progress(step: int, steps: int, label: str, done: int, total: Optional[int], message: str, left: str = ""):
    """``(fraction, text)`` of the one progress bar over ``steps`` builds one after another, during step
    ``step`` (from 1), named ``label``, which reports ``done`` of ``total`` photos with ``message``; ``left``:
    the time left in this step (:meth:`core.progress.Pace.time_left`), ``""`` when unknown."""
    part = min(1.0, done / total) if total else 0.0
    text = f"Step {step}/{steps}, {label}: {message}"
    if total:
        text += f" — {done:,} / {total:,} photos"
    if left:
        text += f" · about {left} left" + (" in this step" if step < steps else "")
    return (step - 1 + part) / steps, text
