"""A table of your own (CSV, TSV or Parquet, read with pandas) as SourceData: `task.path`,
`task.target`, `task.drop` (columns left out, such as ids), `task.categorical`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.data.sources import SourceData
from lossbench.validation import ConfigError

# File name endings pandas reads, and how (compressed text is read through its extension).
READERS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
}
COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")


def file_format(path: Path) -> tuple[str, str]:
    """(csv | tsv | parquet, the name without its endings), from the file name; any other
    ending is one line naming what works."""
    name = path.name
    lower = name.lower()
    packed = next((c for c in COMPRESSED if lower.endswith(c)), "")
    base = lower[: len(lower) - len(packed)]
    ending = next((e for e in READERS if base.endswith(e)), None)
    if ending is None or (packed and READERS[ending] == "parquet"):
        shown = "".join(path.suffixes[-2:]) or "(none)"
        raise ConfigError(f"task.path {path}: unsupported file type {shown!r} "
                          f"(use .csv, .tsv or .parquet; .csv.gz and the like work too)")
    return READERS[ending], name[: len(base) - len(ending)]


def resolve_path(value: Any) -> Path:
    if value in (None, "", "???"):
        raise ConfigError("task.path must be set: the table to train on, e.g. task.path=data.csv")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ConfigError(f"task.path {value}: no such file (looked for {path.resolve()})")
    if path.is_dir():
        raise ConfigError(f"task.path {value} is a folder; task=table reads one CSV, TSV or "
                          f"Parquet file (task=image_folder reads folders of images)")
    return path.resolve()


def read_table(path: Path) -> Any:
    """The file as a DataFrame, read once per process per file version (sweeps share it)."""
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_cached(path_text: str, mtime_ns: int, size: int) -> Any:
    import pandas as pd

    path = Path(path_text)
    fmt, _ = file_format(path)
    if size == 0:
        raise ConfigError(f"task.path {path} is empty")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", low_memory=False)
    except ImportError as err:
        if fmt == "parquet":
            raise ConfigError(f"reading Parquet needs pyarrow: pip install pyarrow "
                              f"(pandas said: {_first_line(err)})") from None
        raise
    except pd.errors.EmptyDataError:
        raise ConfigError(f"task.path {path} is empty") from None
    except (ValueError, OSError, UnicodeDecodeError) as err:  # ParserError, ArrowInvalid
        raise ConfigError(f"cannot read task.path {path} as {fmt.upper()}: "
                          f"{_first_line(err)}") from None
    except Exception as err:  # pyarrow raises its own types for a damaged file
        raise ConfigError(f"cannot read task.path {path} as {fmt.upper()}: "
                          f"{type(err).__name__}: {_first_line(err)}") from None
    if len(frame) == 0:
        raise ConfigError(f"task.path {path} has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _column_list(columns: list[str], limit: int = 30) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


def unknown_column(key: str, names: list[str], columns: list[str], where: str) -> None:
    """One line for the first name in `names` that is not a column, listing the columns."""
    unknown = [c for c in names if c not in columns]
    if unknown:
        raise ConfigError(f"{key}: {unknown[0]!r} is not a column of {where} "
                          f"(columns: {_column_list(columns)})")


def column_names(value: Any, key: str) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise ConfigError(f"{key} must be a column name or a list of them, got {value!r}")


def load_table(task: dict[str, Any]) -> SourceData:
    """The table's feature columns and its target column, with what results.json records."""
    path = resolve_path(task.get("path"))
    frame = read_table(path)
    columns = list(frame.columns)
    target = task.get("target")
    if target in (None, "", "???"):
        raise ConfigError(f"task.target must be set: the column to predict "
                          f"(columns: {_column_list(columns)})")
    target = str(target)
    if target not in frame.columns:
        raise ConfigError(f"task.target {target!r} is not a column of {path.name} "
                          f"(columns: {_column_list(columns)})")
    drop = column_names(task.get("drop"), "task.drop")
    categorical = column_names(task.get("categorical"), "task.categorical")
    for key, names in (("task.drop", drop), ("task.categorical", categorical)):
        unknown_column(key, names, columns, path.name)
    if target in drop:
        raise ConfigError(f"task.drop names the target {target!r}; drop other columns")
    features = [c for c in columns if c != target and c not in drop]
    if not features:
        raise ConfigError(f"{path.name} has no feature columns besides the target {target!r}"
                          + (" and task.drop" if drop else ""))
    x = _datetimes_as_numbers(frame[features])
    fmt, stem = file_format(path)
    return SourceData(
        name=stem, features=x, target=frame[target].to_numpy(),
        info={
            "source": "table", "path": str(path), "format": fmt,
            "target": target, "dropped_columns": drop,
        },
        categorical=tuple(categorical),
    )


def _datetimes_as_numbers(frame: Any) -> Any:
    """Date-time columns (Parquet keeps them) as days since 1970, so they scale as numbers."""
    import pandas as pd

    stamps = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if not stamps:
        return frame
    frame = frame.copy()
    for name in stamps:
        col = frame[name]
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_convert(None)
        days = (col - pd.Timestamp(0)) / pd.Timedelta(days=1)
        frame[name] = days.astype(np.float64)
    return frame
