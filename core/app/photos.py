"""The photo a page works with, kept in the session: an upload or a dataset photo (Search, Look inside)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union


@dataclass(frozen=True)
class KeptPhoto:
    """A photo a page works with (Search's query, Look inside's photo), kept in the session apart from the widgets
    that chose it: a widget's state is dropped by any run that does not draw it (e.g. while the sidebar has no
    dataset), and an upload lives in its widget. Either an upload's bytes or a photo of the dataset it was chosen
    in; ``root`` and ``dataset`` (its label) say where it was chosen, so that another dataset can use it too."""

    name: str
    root: str
    dataset: str
    tag: str  # tells one query from another (the truth picker's key)
    data: Optional[bytes] = None  # an upload
    rel: Optional[str] = None  # a dataset photo, relative to ``root``
    truth: Optional[str] = None  # what is in the photo, if known

    @classmethod
    def upload(cls, name: str, data: bytes, root: Union[str, Path], dataset: str) -> KeptPhoto:
        tag = hashlib.sha1(data).hexdigest()[:12]
        return cls(name=name, root=str(root), dataset=dataset, tag=tag, data=data)

    @classmethod
    def dataset_photo(cls, root: Union[str, Path], rel: str, label: str, dataset: str) -> KeptPhoto:
        """The photo ``rel`` (of class ``label``) in the dataset at ``root``."""
        tag = hashlib.sha1(f"{root}|{rel}".encode()).hexdigest()[:12]
        return cls(name=Path(rel).name, root=str(root), dataset=dataset, tag=tag, rel=rel, truth=label)

    @property
    def uploaded(self) -> bool:
        return self.data is not None

    def source(self) -> Union[io.BytesIO, Path]:
        """The photo: the upload's bytes, or the dataset photo's path."""
        return io.BytesIO(self.data) if self.uploaded else Path(self.root) / self.rel

    def readable(self) -> bool:
        """An upload always is; a dataset photo while its file is there."""
        return self.uploaded or (Path(self.root) / self.rel).is_file()

    def is_from(self, root: Union[str, Path]) -> bool:
        return self.root == str(root)

    def with_truth(self, truth: Optional[str]) -> KeptPhoto:
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
        out = f"This photo {where}; it is now used with this one."
        if self.truth and self.truth not in classes:
            out += f" Its class, *{self.truth}*, is not one of this dataset's classes."
        return out
