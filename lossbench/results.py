"""The results file: atomic writes, the config fingerprint resume uses, and reading sweeps."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS_NAME = "results.json"
MANIFEST_NAME = "manifest.json"  # a sweep's jobs and folders, written by its sweeper
SCHEMA = 1
COMPLETE = ("ok", "diverged")
# Config keys that say where or how a run is recorded, not what it computes.
VOLATILE_KEYS = (
    "output_dir", "out_root", "resume", "retries", "logger", "threads", "tags", "stack",
    "trainer.progress_bar",
)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON to a temp file in the same folder, fsync, then rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    return write_json_atomic(Path(output_dir) / RESULTS_NAME, {"schema": SCHEMA, **results})


def config_hash(config: dict[str, Any]) -> str:
    """Fingerprint of what a run computes: equal hashes mean a finished run can be reused."""
    stripped = json.loads(json.dumps(config, default=str))
    for dotted in VOLATILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = stripped
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    stripped.pop("name", None)
    blob = json.dumps(stripped, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_results(path: Path) -> dict[str, Any] | None:
    """A results file's content, or None when it is missing or not valid JSON."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def iter_results(*folders: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable results.json beneath `folders`."""
    for folder in folders:
        for path in sorted(Path(folder).rglob(RESULTS_NAME)):
            data = read_results(path)
            if data is not None:
                yield path, data


def find_complete(folders: list[Path], digest: str) -> tuple[Path, dict[str, Any]] | None:
    """A finished (ok or diverged) run of the same config beneath `folders`, if any."""
    for path, data in iter_results(*[f for f in folders if Path(f).is_dir()]):
        if data.get("config_hash") == digest and data.get("status") in COMPLETE:
            return path, data
    return None


def read_manifest(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's manifest, or None for a folder without one (not lossbench's sweeper)."""
    return read_results(Path(sweep_dir) / MANIFEST_NAME)


def sweep_results(folder: Path) -> tuple[list[tuple[Path, dict[str, Any]]], int]:
    """The readable results of a sweep folder and how many of its jobs have none.

    A sweep with a manifest is read job by job from it (a job's folder holds its
    results.json, or one per seed below it after `seeds=`); any other folder is scanned. Job
    folders are found below `folder` where the sweep was made, so a copied or moved sweep
    folder reads its own files."""
    manifest = read_manifest(folder)
    if manifest is None:
        return list(iter_results(folder)), 0
    found, missing = [], 0
    for job in manifest.get("jobs") or []:
        if not job.get("folder"):
            continue
        inside = os.path.relpath(job["folder"], manifest.get("dir") or folder)
        job_dir = Path(folder) / inside if not inside.startswith("..") else Path(job["folder"])
        paths = [job_dir / RESULTS_NAME] if (job_dir / RESULTS_NAME).exists() else sorted(
            job_dir.glob(f"*/{RESULTS_NAME}"))
        read = [(p, data) for p in paths if (data := read_results(p)) is not None]
        found.extend(read)
        missing += not read
    return found, missing


class CompleteIndex:
    """Finished runs beneath a folder by config hash, scanned once per process: a sweep with
    `resume=true` looks up each of its jobs without reading every results.json again."""

    def __init__(self) -> None:
        self.scanned: dict[Path, dict[str, Path]] = {}

    def find(self, folder: Path, digest: str) -> tuple[Path, dict[str, Any]] | None:
        folder = Path(folder).resolve()
        if folder not in self.scanned:
            self.scanned[folder] = {
                data["config_hash"]: path for path, data in iter_results(folder)
                if data.get("status") in COMPLETE and data.get("config_hash")}
        path = self.scanned[folder].get(digest)
        data = read_results(path) if path is not None else None
        if data is None or data.get("config_hash") != digest or data.get("status") not in COMPLETE:
            return None
        return path, data


FINISHED = CompleteIndex()
