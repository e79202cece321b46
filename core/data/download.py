"""Getting image data onto disk: the flowers dataset download and user-uploaded ``.zip`` files.

Both end in an ImageFolder layout (one sub-folder per class) under the cache dir:

* :func:`download_flowers` -> ``<cache_dir>/flowers/flower_photos``
* :func:`extract_zip`      -> ``<cache_dir>/zips/<sha256[:16]>/`` (or its single top folder)

Nothing is ever fetched or extracted twice: a finished extraction carries a marker file
(:data:`MARKER`, checked by :func:`is_complete`), and a fully downloaded ``.tgz`` is kept and reused.
Downloads go to a ``.part`` file and extractions to a temporary folder, both renamed into place only
when complete, so an interrupted run never looks finished. Archives are extracted defensively: absolute
paths, ``..`` components, links and device files are refused outright, on every Python version.

Failures the user can act on raise :class:`~core.errors.DownloadError` / :class:`~core.errors.DataError`
with a message saying what to do; progress is reported through a :data:`~core.progress.ProgressFn`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Optional

from core.data.flowers import FLOWER_CLASSES, FLOWERS_SIZE, FLOWERS_URL
from core.data.imagefolder import IMAGE_EXTENSIONS
from core.errors import DataError, DownloadError
from core.progress import ProgressFn, no_progress

MARKER = ".complete"  # written into a folder once its extraction has fully succeeded
MAX_ZIP_BYTES = 4 * 1024**3  # total uncompressed size accepted from an uploaded zip
MAX_ZIP_MEMBERS = 200_000  # entries accepted from an uploaded zip

_TGZ_NAME = "flower_photos.tgz"
_TOP_FOLDER = "flower_photos"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------- markers


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished extraction (its :data:`MARKER` file exists)."""
    return (Path(folder) / MARKER).is_file()


def mark_complete(folder: Path) -> None:
    """Write the :data:`MARKER` file into ``folder``."""
    (Path(folder) / MARKER).write_text("ok\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------- flowers


def flowers_path(cache_dir: Path) -> Path:
    """Where :func:`download_flowers` puts the dataset."""
    return Path(cache_dir) / "flowers" / _TOP_FOLDER


def flowers_available(cache_dir: Path) -> bool:
    """True when the flowers dataset is already downloaded and extracted (no network needed)."""
    return is_complete(flowers_path(cache_dir))


def download_flowers(
    cache_dir: Path,
    on_progress: ProgressFn = no_progress,
    url: str = FLOWERS_URL,
    expected_size: Optional[int] = FLOWERS_SIZE,
    timeout: float = 30,
    *,
    expected_classes: Optional[tuple[str, ...]] = FLOWER_CLASSES,
    chunk_size: int = _CHUNK,
) -> Path:
    """Make sure the flowers dataset is on disk and return its ImageFolder root.

    Returns ``<cache_dir>/flowers/flower_photos``. Does nothing when that folder is already complete,
    and skips the download when ``<cache_dir>/flowers/flower_photos.tgz`` is already there (with
    ``expected_size`` bytes, when given). The archive must contain a ``flower_photos/`` top folder with
    a sub-folder of images for each of ``expected_classes`` (``None``: at least two class folders).

    Raises :class:`DownloadError` for network failures, size mismatches and bad or unsafe archives.
    """
    target = flowers_path(cache_dir)
    flowers_dir = target.parent
    if is_complete(target):
        return target
    flowers_dir.mkdir(parents=True, exist_ok=True)
    tgz = flowers_dir / _TGZ_NAME
    have_tgz = tgz.is_file() and (expected_size is None or tgz.stat().st_size == expected_size)
    if not have_tgz:
        _fetch(url, tgz, expected_size, timeout, on_progress, chunk_size)
    try:
        _extract_flowers(tgz, target, expected_classes, on_progress)
    except _BadArchive:
        tgz.unlink(missing_ok=True)  # the next attempt downloads it again
        raise
    return target


def _fetch(
    url: str, dest: Path, expected_size: Optional[int], timeout: float, on_progress: ProgressFn, chunk_size: int
) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``; sizes are checked before the final rename."""
    part = dest.with_name(dest.name + ".part")
    message = f"downloading {dest.name}"
    try:
        out = open(part, "wb")
    except OSError as exc:
        raise DownloadError(f"Could not create {part}: {exc}") from exc
    try:
        with out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = _content_length(response)
            if length is not None and expected_size is not None and length != expected_size:
                raise DownloadError(
                    f"The server at {url} offers {length:,} bytes but the flowers dataset should be "
                    f"{expected_size:,} bytes; not downloading it. The file may have changed on the server."
                )
            total = length if length is not None else expected_size
            done = 0
            on_progress(0, total, message)
            while chunk := response.read(chunk_size):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"Could not write {part}: {exc}. Is the disk full?") from exc
                done += len(chunk)
                on_progress(done, total, message)
        for what, size in (("the server announced", length), ("expected", expected_size)):
            if size is not None and done != size:
                raise DownloadError(
                    f"The download from {url} is incomplete or wrong: got {done:,} bytes, {what} {size:,}. "
                    "The partial file was deleted; please try again."
                )
        os.replace(part, dest)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Could not download the flowers dataset from {url}: {_reason(exc, timeout)}. "
            f"Check your internet connection, or download the file yourself and put it at {dest}; "
            "or use the built-in sample (--data sample)."
        ) from exc
    except BaseException:  # e.g. the progress callback stopped us: never leave a partial file behind
        part.unlink(missing_ok=True)
        raise


def _content_length(response: http.client.HTTPResponse) -> Optional[int]:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException, timeout: float) -> str:
    """A short, human explanation of a network failure."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s (timed out)"
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the whole file arrived"
    return str(exc) or type(exc).__name__


class _BadArchive(DownloadError):
    """The downloaded archive is corrupt, unsafe or not the dataset (as opposed to e.g. a full disk)."""


def _extract_flowers(
    tgz: Path, target: Path, expected_classes: Optional[tuple[str, ...]], on_progress: ProgressFn
) -> None:
    """Safely extract ``tgz`` into a temporary folder, check it, then rename its top folder to ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    message = f"extracting {tgz.name}"
    try:
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_tar_member(member, tgz)
                total = len(members)
                on_progress(0, total, message)
                for i, member in enumerate(members, 1):
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, tmp, filter="data")
                    else:  # pragma: no cover - Python without extraction filters; members were checked above
                        tar.extract(member, tmp)
                    if i == total or i % max(1, total // 200) == 0:
                        on_progress(i, total, message)
        except OSError as exc:
            if exc.errno is None:  # gzip.BadGzipFile and friends: the archive itself is bad
                raise _BadArchive(
                    f"{tgz} is not a valid .tgz archive ({exc}). It was deleted; try again to download it anew."
                ) from exc
            raise DownloadError(f"Could not extract {tgz} into {tmp}: {exc}. Is the disk full?") from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise _BadArchive(
                f"{tgz} is not a valid .tgz archive ({exc}). It was deleted; try again to download it anew."
            ) from exc
        extracted = tmp / _TOP_FOLDER
        if not extracted.is_dir():
            raise _BadArchive(f"{tgz} does not contain a '{_TOP_FOLDER}/' folder; it is not the flowers dataset.")
        _check_classes(extracted, expected_classes, tgz)
        mark_complete(extracted)
        if target.exists():  # an old, incomplete extraction
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse anything but plain files and folders at relative paths inside the archive."""
    problem = _unsafe_name(member.name)
    if problem is None and not (member.isfile() or member.isdir()):
        problem = "is a link or special file"
    if problem is not None:
        raise _BadArchive(f"{archive} contains an unsafe entry '{member.name}' ({problem}); refusing to extract it.")


def _unsafe_name(name: str) -> Optional[str]:
    """Why an archive member name is unsafe to extract, or ``None`` when it is fine."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "'..' in path"
    return None


def _check_classes(root: Path, expected: Optional[tuple[str, ...]], archive: Path) -> None:
    with_images = {p.name for p in root.iterdir() if p.is_dir() and _has_images(p)}
    if expected is not None:
        missing = [c for c in expected if c not in with_images]
        if missing:
            raise _BadArchive(
                f"{archive} is missing the class folder(s) {', '.join(missing)}; it is not the flowers dataset."
            )
    elif len(with_images) < 2:
        raise _BadArchive(f"{archive} has fewer than 2 class folders with images; it is not an image dataset.")


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


# --------------------------------------------------------------------------------------------- zip upload


def extract_zip(
    zip_path: Path,
    cache_dir: Path,
    on_progress: ProgressFn = no_progress,
    *,
    max_bytes: int = MAX_ZIP_BYTES,
    max_members: int = MAX_ZIP_MEMBERS,
) -> Path:
    """Extract an uploaded ``.zip`` of an ImageFolder-layout folder and return the ImageFolder root.

    The zip goes to ``<cache_dir>/zips/<first 16 hex of its sha256>/`` (reused when already complete).
    ``__MACOSX`` and hidden entries (names starting with ``.``) are skipped. The root returned is the
    archive's single top folder when there is one holding sub-folders, else the extraction folder.

    Raises :class:`DataError` when the file is not a zip, holds unsafe entries (absolute paths, ``..``,
    symlinks) or is too big (more than ``max_bytes`` uncompressed or ``max_members`` entries).
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise DataError(f"{zip_path} does not exist; upload or choose a .zip file of class folders.")
    zips_dir = Path(cache_dir) / "zips"
    dest = zips_dir / _sha256(zip_path)[:16]
    if is_complete(dest):
        return _imagefolder_root(dest)
    zips_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise DataError(
            f"{zip_path.name} is not a valid .zip file ({exc}). Zip a folder with one sub-folder per class."
        ) from exc
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=zips_dir))
    try:
        with archive:
            members = _checked_zip_members(archive, zip_path.name, max_bytes, max_members)
            _extract_zip_members(archive, members, tmp, zip_path.name, max_bytes, on_progress)
        mark_complete(tmp)
        if dest.exists():  # an old, incomplete extraction
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not is_complete(dest):  # another process finishing the same zip at the same time is fine
                raise
    except OSError as exc:
        raise DataError(f"Could not extract {zip_path.name} into {zips_dir}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _imagefolder_root(dest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _skipped(parts: tuple[str, ...]) -> bool:
    """macOS resource forks and hidden files are not part of the dataset."""
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _checked_zip_members(
    archive: zipfile.ZipFile, name: str, max_bytes: int, max_members: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The members to extract, with their relative paths; raises DataError for unsafe or oversized zips."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise DataError(f"{name} has {len(infos):,} entries, more than the {max_members:,} allowed.")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise DataError(
            f"{name} would unpack to {total:,} bytes, more than the {max_bytes:,} allowed; use a smaller dataset."
        )
    members = []
    for info in infos:
        problem = _unsafe_name(info.filename)
        file_type = stat.S_IFMT(info.external_attr >> 16)  # Unix zips keep st_mode in the high 16 bits
        if problem is None and info.create_system == 3 and file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is a link or special file"
        if problem is not None:
            raise DataError(f"{name} contains an unsafe entry '{info.filename}' ({problem}); refusing to extract it.")
        rel = PurePosixPath(info.filename.replace("\\", "/"))
        if rel.parts and not _skipped(rel.parts):
            members.append((info, rel))
    return members


def _extract_zip_members(
    archive: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    dest: Path,
    name: str,
    max_bytes: int,
    on_progress: ProgressFn,
) -> None:
    """Write the members under ``dest``, counting real bytes written (headers can lie)."""
    message = f"extracting {name}"
    total = len(members)
    written = 0
    on_progress(0, total, message)
    for i, (info, rel) in enumerate(members, 1):
        out_path = dest.joinpath(*rel.parts)
        if info.is_dir():
            out_path.mkdir(parents=True, exist_ok=True)
        else:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(out_path, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DataError(f"{name} unpacks to more than the {max_bytes:,} bytes allowed.")
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise DataError(f"{name} is not a valid .zip file: '{info.filename}' cannot be read ({exc}).") from exc
        if i == total or i % max(1, total // 200) == 0:
            on_progress(i, total, message)


def _imagefolder_root(folder: Path) -> Path:
    """The single visible top folder when it holds sub-folders (the classes), else ``folder`` itself."""
    entries = [p for p in folder.iterdir() if not _skipped((p.name,))]
    if len(entries) == 1 and entries[0].is_dir():
        if any(p.is_dir() and not _skipped((p.name,)) for p in entries[0].iterdir()):
            return entries[0]
    return folder
