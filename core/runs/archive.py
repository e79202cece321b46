"""A launch as one file: export its run folders into a ``.zip``, import them into another run store.

A teacher prepares a race at home, exports it, imports it in class and replays it (core.app.replay). The zip
holds ``manifest.json`` (format, version, launch id, its run ids, and each file's size and sha256) and
``runs/<run id>/<file>`` for the files of :data:`RUN_FILES` a run has (``best.pt`` only when asked for).

An imported zip is untrusted, checked like an upload before anything lands in the run store:

* entries: no absolute path, ``..``, link or special file (zip-slip), at most ``MAX_MEMBERS``
  (:func:`core.data.download.checked_zip_members`, which checks uploaded datasets); only ``manifest.json``
  and the files of :data:`RUN_FILES` in a folder named like a run id;
* sizes: each file under its limit (:data:`MAX_FILE_BYTES`), the whole under ``MAX_TOTAL_BYTES``, counting
  the bytes really unpacked (headers can lie), and no entry compressed more than ``MAX_RATIO`` to one;
* contents: every file listed in the manifest with its size and sha256, and nothing else; JSON strict (no
  NaN); ``best.pt`` only if ``torch.load(weights_only=True)`` reads it as a dict of tensors, so a pickle that
  would run code is refused without running it; each run loads as an ended run of the launch.

It is unpacked into a hidden ``.import-*`` folder inside the run store (listing skips it), and its run folders
are renamed into place only once all of it passed: a refused archive leaves nothing behind. (A crash between
two renames can leave part of a launch: import it again after removing those runs.) A launch whose runs are
already in the store is refused, never duplicated. Imported runs are marked ``"host": "imported"`` in
``status.json``, so no PID or lock of this machine can make one look like it is training.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Dict, List, Union

from core.data.download import checked_zip_members
from core.errors import DataError
from core.files import atomic_path, make_dirs, remove_stale_files, write_json_atomic
from core.progress import ProgressFn, no_progress
from core.runs.store import ENDED, RunStore, load_run

FORMAT, VERSION = "transferlab-launch", 1
MANIFEST = "manifest.json"
WEIGHTS = "best.pt"
# The files of a run folder an archive may carry (run.lock is this machine's business; stop.json tells a run
# cancelled while queued).
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "progress.json", "progress.jsonl", "summary.json",
             "split.json", "predictions.json", "stop.json", WEIGHTS)  # fmt: skip
MAX_FILE_BYTES = {WEIGHTS: 1024**3}  # ResNet-50's weights are 100 MB
MAX_JSON_BYTES = 64 * 1024**2  # any other file: predictions of a large test split are a few MB
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_MEMBERS = 1000
MAX_RATIO = 200  # uncompressed / compressed, for entries over RATIO_FLOOR: JSON packs ~10×, a zip bomb ~1000×
RATIO_FLOOR = 1024**2
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CHUNK = 1 << 20


def _launch_runs(runs_dir: Path, launch_id: str):
    runs = [r for r in RunStore(runs_dir).list_runs() if r.config.get("group") == launch_id]
    if not launch_id or not runs:
        raise DataError(f"No launch '{launch_id}' in {runs_dir}. `python -m core runs` lists each run's launch.")
    active = [r.run_id for r in runs if r.status not in ENDED]
    if active:
        raise DataError(f"Launch '{launch_id}' has runs that have not ended ({', '.join(active)}): export it "
                        "once they finish, or stop them.")  # fmt: skip
    return runs


def export_launch(
    runs_dir: Path, launch_id: str, out_path: Path, weights: bool = False, on_progress: ProgressFn = no_progress
) -> Dict:
    """Write launch ``launch_id``'s run folders to the zip ``out_path`` (atomically); ``weights``: with each
    run's ``best.pt``. Returns the manifest. A :class:`DataError` when there is no such launch, or one of its
    runs has not ended."""
    runs = _launch_runs(Path(runs_dir), launch_id)
    names = [n for n in RUN_FILES if weights or n != WEIGHTS]
    ordered = sorted(runs, key=lambda r: r.run_id)
    files = [(r.run_id, r.dir / n) for r in ordered for n in names if (r.dir / n).is_file()]
    total = sum(p.stat().st_size for _, p in files)
    manifest = {"format": FORMAT, "version": VERSION, "launch": launch_id, "weights": weights,
                "runs": sorted(r.run_id for r in runs), "files": {}}  # fmt: skip
    done = 0
    on_progress(0, total, f"exporting launch {launch_id}")
    with atomic_path(Path(out_path)) as tmp, zipfile.ZipFile(tmp, "w") as z:
        for run_id, path in files:
            arc = f"runs/{run_id}/{path.name}"
            digest, size = hashlib.sha256(), 0
            compress = zipfile.ZIP_STORED if path.name == WEIGHTS else zipfile.ZIP_DEFLATED  # weights barely pack
            info = zipfile.ZipInfo(arc, (1980, 1, 1, 0, 0, 0))
            info.compress_type = compress
            with open(path, "rb") as src, z.open(info, "w") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                    done += len(chunk)
                    on_progress(done, total, f"exporting launch {launch_id}")
            manifest["files"][arc] = {"size": size, "sha256": digest.hexdigest()}
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def export_launch_bytes(runs_dir: Path, launch_id: str, weights: bool = False) -> bytes:
    """:func:`export_launch`'s zip as bytes (for a download button)."""
    with tempfile.TemporaryDirectory(prefix=".export-", dir=make_dirs(Path(runs_dir))) as tmp:
        path = Path(tmp) / "launch.zip"
        export_launch(runs_dir, launch_id, path, weights)
        return path.read_bytes()


# ------------------------------------------------------------------------------------------------- import


def _strict_json(data: bytes, what: str):
    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{what} is not valid JSON ({e}); refusing the archive.") from e


def _check_json_file(path: Path, what: str) -> None:
    if path.suffix == ".jsonl":
        for i, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip() and not isinstance(_strict_json(line, f"{what} line {i}"), dict):
                raise DataError(f"{what} line {i} is not a JSON object; refusing the archive.")
    elif not isinstance(_strict_json(path.read_bytes(), what), dict):
        raise DataError(f"{what} is not a JSON object; refusing the archive.")


def _check_weights(path: Path, what: str) -> None:
    """``best.pt`` must be a plain dict of tensors, read without running any code it may carry."""
    import torch  # noqa: PLC0415 (lazy: only an archive with weights needs it)

    try:
        with warnings.catch_warnings():  # a foreign pickle protocol warns before being refused: say it once, below
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (an untrusted file: whatever it raises, it is refused)
        raise DataError(f"{what} is not a plain checkpoint of weights ({type(e).__name__}); it may hold code. "
                        "Refusing the archive.") from e  # fmt: skip
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise DataError(f"{what} is not a dict of named tensors; refusing the archive.")


def _read_manifest(archive: zipfile.ZipFile, name: str) -> Dict:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise DataError(f"{name} has no {MANIFEST}: it is not a launch exported by Transfer Lab.") from None
    if info.file_size > MAX_JSON_BYTES:
        raise DataError(f"{name}'s {MANIFEST} is {info.file_size:,} bytes, more than allowed; refusing it.")
    manifest = _strict_json(archive.read(info), f"{name}'s {MANIFEST}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{name} is not a launch exported by Transfer Lab (no '{FORMAT}' manifest).")
    if manifest.get("version") != VERSION:
        raise DataError(f"{name} is a launch archive of version {manifest.get('version')!r}; this Transfer Lab "
                        f"reads version {VERSION}.")  # fmt: skip
    files, runs = manifest.get("files"), manifest.get("runs")
    if not isinstance(manifest.get("launch"), str) or not isinstance(files, dict) or not isinstance(runs, list):
        raise DataError(f"{name}'s {MANIFEST} has no launch id, run list or file list; refusing it.")
    for arc, entry in files.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
        if not ok:
            raise DataError(f"{name}'s {MANIFEST} lists '{arc}' without a size and sha256; refusing it.")
    return manifest


def _member_path(arc: str, runs: List[str], name: str) -> PurePosixPath:
    """``runs/<run id>/<file>`` of a listed run and an allowed file name; DataError otherwise."""
    rel = PurePosixPath(arc)
    if len(rel.parts) != 3 or rel.parts[0] != "runs" or rel.parts[1] not in runs or rel.parts[2] not in RUN_FILES:
        raise DataError(f"{name} holds '{arc}', which is not a file of a run folder ({', '.join(RUN_FILES)}); "
                        "refusing the archive.")  # fmt: skip
    return rel


def _unpack(archive: zipfile.ZipFile, manifest: Dict, dest: Path, name: str, on_progress: ProgressFn) -> None:
    """Unpack and check every member into ``dest``; a DataError on the first problem."""
    members = checked_zip_members(archive, name, MAX_TOTAL_BYTES, MAX_MEMBERS)  # names, links, count, total
    runs, listed = manifest["runs"], manifest["files"]
    bad = [r for r in runs if not isinstance(r, str) or not RUN_ID.match(r)]
    if bad or not runs:
        raise DataError(f"{name}'s {MANIFEST} names no runs, or a run id that is not a folder name ({bad[:1]}).")
    infos = {str(rel): info for info, rel in members if not info.is_dir() and str(rel) != MANIFEST}
    for arc in set(infos) | set(listed):
        _member_path(arc, runs, name)
    if set(infos) != set(listed):
        missing = sorted(set(listed) - set(infos)) or sorted(set(infos) - set(listed))
        raise DataError(f"{name} does not hold the files its manifest lists (e.g. '{missing[0]}'); refusing it.")
    total, done = sum(listed[a]["size"] for a in infos), 0
    if total > MAX_TOTAL_BYTES:
        raise DataError(f"{name} declares {total:,} bytes, more than the {MAX_TOTAL_BYTES:,} allowed.")
    for arc, info in sorted(infos.items()):
        rel = PurePosixPath(arc)
        limit = MAX_FILE_BYTES.get(rel.name, MAX_JSON_BYTES)
        if max(info.file_size, listed[arc]["size"]) > limit:
            raise DataError(f"{name}: '{arc}' is over the {limit:,} bytes allowed for it; refusing the archive.")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DataError(f"{name}: '{arc}' is compressed more than {MAX_RATIO}:1, like a zip bomb; refusing it.")
        out = make_dirs(dest / rel.parts[1]) / rel.name
        digest, size = hashlib.sha256(), 0
        try:
            with archive.open(info) as src, open(out, "wb") as f:
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    if size > min(limit, listed[arc]["size"]):
                        raise DataError(f"{name}: '{arc}' unpacks to more than its manifest's "
                                        f"{listed[arc]['size']:,} bytes; refusing the archive.")  # fmt: skip
                    digest.update(chunk)
                    f.write(chunk)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, OSError) as e:
            raise DataError(f"{name}: '{arc}' cannot be read ({e}); refusing the archive.") from e
        if size != listed[arc]["size"] or digest.hexdigest() != listed[arc]["sha256"]:
            raise DataError(f"{name}: '{arc}' does not match its manifest's size and sha256 (altered after the "
                            "export?); refusing the archive.")  # fmt: skip
        what = f"{name}: '{arc}'"
        if rel.name == WEIGHTS:
            _check_weights(out, what)
        else:
            _check_json_file(out, what)
        done += size
        on_progress(done, total, f"checking {name}")


def import_launch(
    zip_file: Union[Path, str, IO[bytes]], runs_dir: Path, on_progress: ProgressFn = no_progress, shown_as: str = ""
) -> Dict:
    """Import an exported launch (a path or an open binary file) into the run store ``runs_dir``: every check of
    the module docstring, then its run folders renamed into place. Returns ``{"launch": id, "runs": [ids]}``.
    A :class:`DataError` saying what is wrong, with nothing written, for an archive that fails any check or a
    launch already in the store."""
    runs_dir = make_dirs(Path(runs_dir))
    name = shown_as or (Path(zip_file).name if isinstance(zip_file, (str, Path)) else "the archive")
    try:
        archive = zipfile.ZipFile(zip_file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise DataError(f"'{name}' is not a valid .zip file ({e}); export a launch with `python -m core "
                        "export-launch` or the Train page's Export button.") from e  # fmt: skip
    remove_stale_files(runs_dir, (".import-*",))  # what a killed import left (a live one is younger)
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=runs_dir))
    try:
        with archive:
            manifest = _read_manifest(archive, name)
            launch, runs = manifest["launch"], manifest["runs"]
            there = [r for r in runs if isinstance(r, str) and (runs_dir / r).exists()]
            if there:
                raise DataError(
                    f"Launch '{launch}' is already in the run store ({len(there)} of its {len(runs)} runs, e.g. "
                    f"{there[0]}): nothing imported. Replay it from the Train page."
                )
            _unpack(archive, manifest, tmp, name, on_progress)
        for run_id in runs:
            rec = load_run(tmp / run_id)
            if rec.status not in ENDED or rec.config.get("group") != launch:
                why = "it is of another launch" if rec.status in ENDED else (rec.error or f"it is {rec.status}")
                raise DataError(f"{name}: run {run_id} cannot be imported ({why}); refusing the archive.")
            status = {"status": rec.status, "host": "imported", "pid": None, "started_at": rec.started_at,
                      "owner": "", **({"queued_at": rec.queued_at} if rec.queued_at is not None else {}),
                      "imported_from": (rec.process or {}).get("host")}  # fmt: skip
            write_json_atomic(tmp / run_id / "status.json", status)
        for run_id in runs:
            os.rename(tmp / run_id, runs_dir / run_id)  # refuses to replace a folder that appeared meanwhile
    except OSError as e:
        raise DataError(f"Could not import '{name}' into {runs_dir}: {e.strerror or e}.") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"launch": launch, "runs": list(runs)}
