"""Getting image data onto disk: the flowers dataset download and user-uploaded ``.zip`` files.

Both end in an ImageFolder layout (one sub-folder per class) under the cache dir:

* :func:`download_flowers` -> ``<cache_dir>/flowers/flower_photos``
* :func:`extract_zip`      -> ``<cache_dir>/zips/<sha256[:16]>/`` (or its single top folder)

Nothing is ever fetched or extracted twice: a finished extraction carries a marker file
(:data:`MARKER`, checked by :func:`is_complete`), and a downloaded ``.tgz`` whose SHA-256 matches is kept
and reused. The download goes through `pooch <https://www.fatiando.org/pooch>`_ into a temporary file,
moved into place only once its size and SHA-256 are right; extractions go to a temporary folder renamed
into place only when complete. So an interrupted run never looks finished. Archives are extracted
defensively: absolute paths, ``..`` components, links and device files are refused outright, on every
Python version.

Failures the user can act on raise :class:`~core.errors.DownloadError` / :class:`~core.errors.DataError`
with a message saying what to do; progress is reported through a :data:`~core.progress.ProgressFn`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional

from core.data.flowers import FLOWER_CLASSES, FLOWERS_SHA256, FLOWERS_SIZE, FLOWERS_URL
from core.data.imagefolder import IMAGE_EXTENSIONS
from core.errors import DataError, DownloadError
from core.files import remove_stale_files
from core.progress import ProgressFn, no_progress

MARKER = ".complete"  # written into a folder once its extraction has fully succeeded
EXTRACTIONS = "zips"  # under the cache dir: where extract_zip puts each zip, in a folder named by its hash
NAME_CHARS = 16  # hex digits of the SHA-256 naming an extracted zip (and its upload: core.data.uploads)
MAX_ZIP_BYTES = 4 * 1024**3  # total uncompressed size accepted from an uploaded zip
MAX_ZIP_MEMBERS = 200_000  # entries accepted from an uploaded zip

_TGZ_NAME = "flower_photos.tgz"
_TOP_FOLDER = "flower_photos"
_CHUNK = 1 << 20
_POOCH_TMP_GLOB = "tmp*"  # pooch downloads into a tempfile.NamedTemporaryFile next to the destination
_WAIT_POLL_SECONDS = 0.5  # how often a session waiting for another's download looks at its progress


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
    known_hash: Optional[str] = FLOWERS_SHA256,
    chunk_size: int = _CHUNK,
) -> Path:
    """Make sure the flowers dataset is on disk and return its ImageFolder root.

    Returns ``<cache_dir>/flowers/flower_photos``. Does nothing when that folder is already complete,
    and skips the download when ``<cache_dir>/flowers/flower_photos.tgz`` is already there with the right
    SHA-256 (``known_hash``; ``None``: any file of ``expected_size`` bytes, when given). A download is
    refused when the server announces another size than ``expected_size``, and kept only when its size and
    SHA-256 match. The archive must contain a ``flower_photos/`` top folder with a sub-folder of images for
    each of ``expected_classes`` (``None``: at least two class folders).

    Raises :class:`DownloadError` for network failures, size or hash mismatches and bad or unsafe archives.
    """
    target = flowers_path(cache_dir)
    flowers_dir = target.parent
    if is_complete(target):
        return target
    try:
        flowers_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"Could not create {flowers_dir}: {exc}") from exc
    with _one_downloader(flowers_dir, expected_size, on_progress):
        if is_complete(target):  # another session finished it while this one waited
            return target
        _remove_stale_downloads(flowers_dir)
        tgz = flowers_dir / _TGZ_NAME
        if tgz.is_file() and expected_size is not None and tgz.stat().st_size != expected_size:
            tgz.unlink()  # not the dataset (e.g. an old partial copy): download it again
        _fetch(url, tgz, known_hash, expected_size, timeout, on_progress, chunk_size)
        try:
            _extract_flowers(tgz, target, expected_classes, on_progress)
        except _BadArchive:
            tgz.unlink(missing_ok=True)  # the next attempt downloads it again
            raise
    return target


@contextlib.contextmanager
def _one_downloader(folder: Path, expected_size: Optional[int], on_progress: ProgressFn) -> Iterator[None]:
    """Hold the download lock of ``folder``: one session downloads and extracts, the others wait, showing the
    downloader's progress (the size of its temporary file), and then find the dataset ready. The operating
    system releases the lock when its holder dies, so a killed download never blocks the next one."""
    try:
        import fcntl  # noqa: PLC0415 (optional: POSIX only; elsewhere sessions do not wait for each other)
    except ImportError:
        yield
        return
    with open(folder.with_name(f".{folder.name}.lock"), "w") as lock:  # beside the folder: it stays clean
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                done = sum(_size(p) for p in folder.glob(_POOCH_TMP_GLOB))
                on_progress(done, expected_size, f"another session is downloading {_TGZ_NAME}; waiting for it")
                time.sleep(_WAIT_POLL_SECONDS)  # a lock held elsewhere announces nothing: poll it
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # finished and moved, or removed, since it was listed
        return 0


def _remove_stale_downloads(folder: Path) -> None:
    """Delete what a killed download or extraction left behind: temporary download files (a live download
    keeps writing its own) and extraction folders (only the lock holder extracts, so any is left over)."""
    remove_stale_files(folder, (_POOCH_TMP_GLOB, _TGZ_NAME + ".part"))
    remove_stale_files(folder, (".extract-*",), older_than=-1)  # under the lock: any extraction is left over


def _fetch(
    url: str,
    dest: Path,
    known_hash: Optional[str],
    expected_size: Optional[int],
    timeout: float,
    on_progress: ProgressFn,
    chunk_size: int,
) -> None:
    """Make sure ``dest`` holds the file at ``url`` with SHA-256 ``known_hash``, downloading it when needed.

    pooch keeps an existing ``dest`` whose hash matches; otherwise it downloads to a temporary file in the same
    folder and moves it to ``dest`` only when the size checks here and its hash check pass, and deletes it on
    any failure or interruption (including the progress callback raising).
    """
    import pooch  # noqa: PLC0415 (lazy: pooch and requests take ~0.1 s to import; only a download needs them)
    import requests  # noqa: PLC0415 (lazy, as pooch)

    progress = _PoochProgress(on_progress, f"downloading {dest.name}", url, expected_size)
    http = pooch.HTTPDownloader(progressbar=progress, chunk_size=chunk_size, timeout=timeout)

    def download(url: str, output_file: str, caller: object) -> None:
        progress.file = output_file
        try:
            http(url, output_file, caller)
        except requests.exceptions.ChunkedEncodingError as exc:  # the body ended early (or broke) mid-way
            progress.check_size(exc)
            raise
        progress.check_size()
        progress.downloaded = True  # from here on, a ValueError is pooch's hash check failing

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch logs each download to stderr; core never prints
    try:
        pooch.retrieve(url, known_hash=known_hash, fname=dest.name, path=dest.parent, downloader=download)
    except Exception as exc:
        error = None if exc is progress.raised else _download_error(exc, url, dest, known_hash, timeout, progress)
        if error is None:
            raise
        raise error from exc
    finally:
        logger.setLevel(level)


def _download_error(
    exc: Exception, url: str, dest: Path, known_hash: Optional[str], timeout: float, progress: _PoochProgress
) -> Optional[DownloadError]:
    """The user-facing error for a failed download, or ``None`` to let ``exc`` through (already one, or a bug)."""
    import requests  # noqa: PLC0415 (lazy, as in _fetch)

    if isinstance(exc, DownloadError):
        return None
    if isinstance(exc, requests.exceptions.RequestException):
        return DownloadError(
            f"Could not download the flowers dataset from {url}: {_reason(exc, timeout)}. "
            f"Check your internet connection, or download the file yourself and put it at {dest}; "
            "or use the built-in sample (--data sample)."
        )
    if isinstance(exc, ValueError) and progress.downloaded:
        return DownloadError(
            f"The file downloaded from {url} is not the expected one: its checksum (SHA-256) is not the dataset's. "
            "It may have been corrupted on the way, or the file on the server has changed. "
            "The file was deleted; please try again."
        )
    if isinstance(exc, OSError):
        return DownloadError(f"Could not write the download into {dest.parent}: {exc}. Is the disk full?")
    return None


class _PoochProgress:
    """A progress bar for ``pooch.HTTPDownloader(progressbar=...)`` that reports to a :data:`ProgressFn`.

    pooch sets :attr:`total` (the Content-Length, 0 when absent) before the first chunk, calls ``update(n)``
    after writing and flushing each chunk (``n`` is the chunk size, even for the shorter last chunk), then
    ``reset()``, ``update(total)`` and ``close()``. So the bytes reported are the temporary file's real size.
    Setting :attr:`total` raises :class:`DownloadError` when the server announces another size than expected:
    the download is refused before any of it is read.
    """

    def __init__(self, on_progress: ProgressFn, message: str, url: str, expected_size: Optional[int]) -> None:
        self.on_progress = on_progress
        self.message = message
        self.url = url
        self.expected_size = expected_size
        self.file: Optional[str] = None  # the temporary file pooch downloads to
        self.length: Optional[int] = None  # the size the server announced
        self.downloaded = False  # the whole body arrived and its size is right
        self.raised: Optional[BaseException] = None  # what the progress callback raised, if it did
        self._reported = -1

    @property
    def total(self) -> Optional[int]:
        return self.length

    @total.setter
    def total(self, value: int) -> None:
        self.length = int(value) or None
        if self.length is not None and self.expected_size is not None and self.length != self.expected_size:
            raise DownloadError(
                f"The server at {self.url} offers {self.length:,} bytes but the flowers dataset should be "
                f"{self.expected_size:,} bytes; not downloading it. The file may have changed on the server."
            )
        self._report()

    def update(self, n: int) -> None:
        self._report()

    def reset(self) -> None:
        pass  # pooch resets then fills the bar; the file's size is the truth either way

    def close(self) -> None:
        pass

    def _size(self) -> int:
        return os.path.getsize(self.file) if self.file is not None else 0

    def _report(self) -> None:
        done = self._size()
        if done == self._reported:
            return
        self._reported = done
        try:
            self.on_progress(done, self.length if self.length is not None else self.expected_size, self.message)
        except BaseException as exc:  # e.g. a Streamlit rerun: let it through untouched
            self.raised = exc
            raise

    def check_size(self, broken: Optional[BaseException] = None) -> None:
        """Raise :class:`DownloadError` unless the file has the announced and the expected sizes.

        ``broken`` is the error that cut the body short, if any: the bytes received are then urllib3's count
        (the last, partial chunk is never written to the file).
        """
        import urllib3  # noqa: PLC0415 (lazy, as requests)

        received = [c.partial for c in _causes(broken) if isinstance(c, urllib3.exceptions.IncompleteRead)]
        done = max([self._size(), *(n for n in received if isinstance(n, int))])
        for what, size in (("the server announced", self.length), ("expected", self.expected_size)):
            if size is not None and done != size:
                raise DownloadError(
                    f"The download from {self.url} is incomplete or wrong: got {done:,} bytes, {what} {size:,}. "
                    "The partial file was deleted; please try again."
                )


def _reason(exc: BaseException, timeout: float) -> str:
    """A short, human explanation of a network failure (requests wraps the cause in urllib3's errors)."""
    import requests  # noqa: PLC0415 (lazy, as in _fetch)
    import urllib3  # noqa: PLC0415 (lazy, as requests)

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"the server answered HTTP {exc.response.status_code} {exc.response.reason}"
    causes = _causes(exc)
    if any(isinstance(c, (requests.exceptions.Timeout, TimeoutError)) for c in causes):  # socket.timeout too
        return f"no answer within {timeout:g} s (timed out)"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return f"the host name could not be resolved ({cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(cause, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead)):
            return "the connection closed before the whole file arrived"
    return str(exc) or type(exc).__name__


def _causes(exc: Optional[BaseException]) -> list[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, ``reason`` attributes and exception arguments."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


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
                    f"The downloaded {tgz.name} is not a valid .tgz archive ({exc}). It was deleted; try again to "
                    "download it anew."
                ) from exc
            raise DownloadError(
                f"Could not unpack the flowers dataset into {target.parent}: {exc.strerror or exc}. Is the disk full?"
            ) from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise _BadArchive(
                f"The downloaded {tgz.name} is not a valid .tgz archive ({exc}). It was deleted; try again to "
                "download it anew."
            ) from exc
        extracted = tmp / _TOP_FOLDER
        if not extracted.is_dir():
            raise _BadArchive(
                f"The downloaded {tgz.name} does not contain a '{_TOP_FOLDER}/' folder; it is not the flowers dataset."
            )
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
        raise _BadArchive(
            f"The downloaded {archive.name} contains an unsafe entry '{member.name}' ({problem}); "
            "refusing to extract it."
        )


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
                f"The downloaded {archive.name} is missing the class folder(s) {', '.join(missing)}; it is not the "
                "flowers dataset."
            )
    elif len(with_images) < 2:
        raise _BadArchive(
            f"The downloaded {archive.name} has fewer than 2 class folders with images; it is not an image dataset."
        )


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
    shown_as: Optional[str] = None,
) -> Path:
    """Extract an uploaded ``.zip`` of an ImageFolder-layout folder and return the ImageFolder root.

    The zip goes to ``<cache_dir>/zips/<first 16 hex of its sha256>/`` (reused when already complete).
    ``__MACOSX`` and hidden entries (names starting with ``.``) are skipped. The root returned is the
    archive's single top folder when there is one holding sub-folders, else the extraction folder.

    Raises :class:`DataError` when the file is not a zip, holds unsafe entries (absolute paths, ``..``,
    symlinks) or is too big (more than ``max_bytes`` uncompressed or ``max_members`` entries). Messages name the
    zip ``shown_as`` (how the user knows it: an upload's file name) or by its file name, never by its cache path.
    """
    zip_path = Path(zip_path)
    name = shown_as or zip_path.name
    if not zip_path.is_file():
        raise DataError(f"'{name}' does not exist (any more); upload or choose a .zip file of class folders again.")
    zips_dir = Path(cache_dir) / EXTRACTIONS
    dest = zips_dir / _sha256(zip_path)[:NAME_CHARS]
    if is_complete(dest):
        return _imagefolder_root(dest)
    zips_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise DataError(
            f"'{name}' is not a valid .zip file ({exc}). Zip a folder with one sub-folder per class."
        ) from exc
    remove_stale_files(zips_dir, (".extract-*",))  # extractions a killed process left (a live one is younger)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=zips_dir))
    try:
        with archive:
            members = checked_zip_members(archive, name, max_bytes, max_members)
            _extract_zip_members(archive, members, tmp, name, max_bytes, on_progress)
        mark_complete(tmp)
        if dest.exists():  # an old, incomplete extraction
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not is_complete(dest):  # another process finishing the same zip at the same time is fine
                raise
    except OSError as exc:
        raise DataError(
            f"Could not unpack '{name}' into the cache ({zips_dir}): {exc.strerror or exc}. Is the disk full?"
        ) from exc
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


def checked_zip_members(
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
