"""OpenML data sets (`task=openml task.dataset=<id or name>`) through scikit-learn's
fetch_openml, cached under a data home so each set is downloaded once; `task.download=false`
reads the cache only and says what is missing where."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

from lossbench.data.sources import SourceData, one_line
from lossbench.validation import ConfigError


def data_home(task: dict[str, Any]) -> Path:
    """fetch_openml's data home: task.data_home, else lossbench's data folder (which
    LOSSBENCH_DATA_DIR moves); the files lie under <data home>/openml/openml.org/."""
    if task.get("data_home"):
        return Path(str(task["data_home"])).expanduser().resolve()
    from lossbench.data.vision import default_data_dir

    return default_data_dir()


def dataset_key(value: Any) -> int | str:
    """An OpenML data id (61, "61") or a data set name ("iris")."""
    if isinstance(value, bool) or value in (None, "", "???"):
        raise ConfigError("task.dataset must be set: an OpenML data id or name, "
                          "e.g. task.dataset=61 or task.dataset=iris")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text.lower()


def cache_files(key: int | str, home: Path, version: Any = "active") -> list[Path]:
    """The cache files fetch_openml reads for `key`, in its own layout (its path helpers); the
    data file's name comes from the cached description, so a missing description ends the list."""
    from sklearn.datasets import _openml as om

    root = str(home / "openml")

    def local(url: str) -> Path:
        return Path(om._get_local_path(om._openml_path_from_url(url), root))

    files = []
    if isinstance(key, str):
        url = (om._SEARCH_NAME.format(key) + "/status/active/" if version == "active"
               else (om._SEARCH_NAME + "/data_version/{}").format(key, version))
        files.append(local(url))
        if not files[-1].is_file():
            return files
        data_id = _read_json(files[-1])["data"]["dataset"][0]["did"]
    else:
        data_id = key
    files.append(local(om._DATA_INFO.format(data_id)))
    if not files[-1].is_file():
        return files
    description = _read_json(files[-1])["data_set_description"]
    files += [local(om._DATA_FEATURES.format(data_id)), local(om._DATA_QUALITIES.format(data_id)),
              local(description["url"])]
    return files


def _read_json(path: Path) -> Any:
    with gzip.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def load_openml(task: dict[str, Any]) -> SourceData:
    from dataclasses import replace

    from lossbench.data.table import column_names, unknown_column

    key = dataset_key(task.get("dataset"))
    target = task.get("target") or None
    source = _load(key, str(task.get("version", "active")), target, str(data_home(task)),
                   bool(task.get("download", True)))
    drop = column_names(task.get("drop"), "task.drop")
    categorical = column_names(task.get("categorical"), "task.categorical")
    columns = list(source.features.columns)
    for key_name, names in (("task.drop", drop), ("task.categorical", categorical)):
        unknown_column(key_name, names, columns, source.name)
    if not drop and not categorical:
        return source
    kept = [c for c in columns if c not in drop]
    return replace(source, features=source.features[kept], categorical=tuple(categorical),
                   info={**source.info, "dropped_columns": drop})


@functools.lru_cache(maxsize=8)
def _load(key: int | str, version: str, target: str | None, home_text: str,
          download: bool) -> SourceData:
    import warnings

    from sklearn.datasets import fetch_openml

    home = Path(home_text)
    cache = home / "openml" / "openml.org"
    what = f"OpenML data set {key!r}" if isinstance(key, str) else f"OpenML data set {key}"
    version_arg: Any = int(version) if version.isdigit() else version
    if not download:
        missing = [p for p in cache_files(key, home, version_arg) if not p.is_file()]
        if missing:
            raise ConfigError(f"{what} is not in the cache at {cache} (no {missing[0].name} in "
                              f"{missing[0].parent}) and task.download=false: it needs a "
                              f"download; run once with network access and task.download=true")
    kwargs: dict[str, Any] = {"data_id": key} if isinstance(key, int) else {
        "name": key, "version": version_arg}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multiple active versions", inactive-set notes
            # Every column as data: the target is taken here, so that rows without one are
            # dropped and counted as for a table (fetch_openml refuses a numeric target
            # with missing values).
            bunch = fetch_openml(**kwargs, data_home=str(home), as_frame=True, parser="auto",
                                 target_column=None, n_retries=1, delay=0.5)
    except OSError as err:  # URLError, HTTPError, timeouts: no network, or no such file
        reason = getattr(err, "reason", None) or err
        raise ConfigError(f"{what} is not in the cache at {cache} and needs a download, which "
                          f"failed ({type(err).__name__}: {one_line(str(reason), 120)}); run "
                          f"with network access once, or copy a cache there") from None
    except (ValueError, KeyError) as err:
        raise ConfigError(f"{what}: {one_line(str(err), 200)}") from None
    import pandas as pd

    frame = bunch.data
    columns = [str(c) for c in frame.columns]
    default = str(bunch.details.get("default_target_attribute") or "")
    target_name = target or default
    if not target_name or "," in target_name:
        raise ConfigError(f"{what} has {'no' if not default else 'several'} default target "
                          f"column(s){': ' + default if default else ''}; name one with "
                          f"task.target= (columns: {', '.join(columns)})")
    if target_name not in frame.columns:
        raise ConfigError(f"task.target {target_name!r} is not a column of {what} "
                          f"(columns: {', '.join(columns)})")
    y = frame[target_name]
    features = frame.drop(columns=[target_name])
    name = str(bunch.details.get("name", key))
    nominal = not pd.api.types.is_numeric_dtype(y) or isinstance(y.dtype, pd.CategoricalDtype)
    levels = int(y.dropna().nunique())
    kind = ("binary" if levels == 2 else "multiclass") if nominal else "regression"
    reason = (f"OpenML's target {target_name!r} is nominal with {levels} levels" if nominal
              else f"OpenML's target {target_name!r} is numeric")
    data_id = int(bunch.details.get("id", key if isinstance(key, int) else 0))
    return SourceData(
        name=name, features=features.reset_index(drop=True),
        target=y.to_numpy(dtype=object) if nominal else y.astype("float64").to_numpy(),
        kind=kind, kind_reason=reason,
        info={"source": "openml", "data_id": data_id, "name": name,
              "version": bunch.details.get("version"), "target": target_name,
              "url": bunch.url, "licence": bunch.details.get("licence"),
              "citation": bunch.details.get("citation"), "cache": str(cache)},
    )
