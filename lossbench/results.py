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
