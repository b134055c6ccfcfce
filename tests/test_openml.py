"""`task=openml`: OpenML sets through scikit-learn's fetch_openml, from its cache.

The tests write a cache in fetch_openml's own on-disk layout (gzipped JSON answers of the
OpenML API and the gzipped ARFF file, under <data_home>/openml/openml.org/) holding the real
Palmer penguins, and never touch the network: sockets are refused where a download could start.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import socket
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lossbench.config import compose_config
from lossbench.data.loading import load_data
from lossbench.environment import to_plain
from lossbench.validation import ConfigError, validate_config

DATA_ID, FILE_ID = 42585, 22044302
NOMINAL = ("species", "island", "sex")


def arff_text(frame: pd.DataFrame) -> str:
    lines = ["% Palmer penguins (palmerpenguins, CC0)", "@RELATION penguins", ""]
    for name in frame.columns:
        if name in NOMINAL:
            levels = ",".join(sorted(frame[name].dropna().unique()))
            lines.append(f"@ATTRIBUTE {name} {{{levels}}}")
        else:
            lines.append(f"@ATTRIBUTE {name} NUMERIC")
    lines += ["", "@DATA"]
    for row in frame.itertuples(index=False):
        lines.append(",".join("?" if pd.isna(v) else str(v) for v in row))
    return "\n".join(lines) + "\n"


def write_gz(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)


def write_cache(home: Path, frame: pd.DataFrame) -> None:
    """What fetch_openml leaves after downloading data set DATA_ID by id and by name."""
    root = home / "openml" / "openml.org"
    arff = arff_text(frame).encode()
    features = [{
        "index": str(i), "name": name, "data_type": "nominal" if name in NOMINAL else "numeric",
        **({"nominal_value": sorted(frame[name].dropna().unique())} if name in NOMINAL else {}),
        "is_target": "true" if name == "species" else "false", "is_ignore": "false",
        "is_row_identifier": "false",
        "number_of_missing_values": str(int(frame[name].isna().sum())),
    } for i, name in enumerate(frame.columns)]
    description = {"data_set_description": {
        "id": str(DATA_ID), "name": "penguins", "version": "1", "format": "ARFF",
        "description": "Palmer Archipelago penguins", "licence": "CC0", "status": "active",
        "url": f"https://api.openml.org/data/v1/download/{FILE_ID}/penguins.arff",
        "file_id": str(FILE_ID), "default_target_attribute": "species",
        "md5_checksum": hashlib.md5(arff).hexdigest(),
        "citation": "Gorman KB, Williams TD, Fraser WR (2014) PLoS ONE 9(3): e90081",
    }}
    qualities = {"data_qualities": {"quality": [
        {"name": "NumberOfInstances", "value": f"{len(frame)}.0"},
        {"name": "NumberOfFeatures", "value": f"{frame.shape[1]}.0"},
    ]}}
    listing = {"data": {"dataset": [
        {"did": DATA_ID, "name": "penguins", "version": 1, "status": "active", "format": "ARFF"},
    ]}}
    api = root / "api" / "v1" / "json" / "data"
    write_gz(api / f"{DATA_ID}.gz", json.dumps(description).encode())
    write_gz(api / "features" / f"{DATA_ID}.gz",
             json.dumps({"data_features": {"feature": features}}).encode())
    write_gz(api / "qualities" / f"{DATA_ID}.gz", json.dumps(qualities).encode())
    # The listing's URL ends in a slash: its cache file is named ".gz" inside "active/".
    write_gz(api / "list" / "data_name" / "penguins" / "limit" / "2" / "status" / "active" /
             ".gz", json.dumps(listing).encode())
    write_gz(root / "data" / "v1" / "download" / str(FILE_ID) / "penguins.arff.gz", arff)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, penguins) -> Path:
    folder = tmp_path_factory.mktemp("openml_home")
    write_cache(folder, penguins)
    return folder


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without network: name lookups and connects fail as they do offline."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def data_of(home: Path, *overrides: str):
    cfg = to_plain(compose_config(["logger=none", "task=openml", f"task.data_home={home}",
                                   *overrides]))
    validate_config(cfg)
    return cfg, load_data(cfg)


def test_the_cache_is_fetch_openmls_own_format(home, no_network, penguins) -> None:
    from sklearn.datasets import fetch_openml

    by_id = fetch_openml(data_id=DATA_ID, data_home=str(home), as_frame=True, parser="auto")
    by_name = fetch_openml("penguins", data_home=str(home), as_frame=True, parser="auto")
    assert by_id.data.shape == by_name.data.shape == (344, 7)
    assert list(by_id.target.cat.categories) == ["Adelie", "Chinstrap", "Gentoo"]
    np.testing.assert_allclose(by_id.data["bill_length_mm"], penguins["bill_length_mm"])


def test_an_openml_set_by_id_takes_its_kind_from_openmls_target(home, no_network) -> None:
    cfg, data = data_of(home, f"task.dataset={DATA_ID}", "task.download=false")
    assert (cfg["task"]["kind"], cfg["loss"]["name"]) == ("multiclass", "ce")
    info = data.info
    assert info["source"] == "openml" and info["data_id"] == DATA_ID
    assert info["kind_reason"] == "OpenML's target 'species' is nominal with 3 levels"
    assert info["class_names"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert info["cache"] == str(home / "openml" / "openml.org")
    assert set(info["columns"]["categorical"]) == {"island", "sex"}


def test_by_name_with_another_target(home, no_network) -> None:
    cfg, data = data_of(home, "task.dataset=penguins", "task.target=body_mass_g",
                        "task.download=false")
    assert cfg["task"]["kind"] == "regression" and cfg["loss"]["name"] == "mse"
    assert data.info["rows_dropped"] == 2
    assert "species" in data.info["columns"]["categorical"]


def test_the_same_preprocessing_as_a_table(home, no_network, penguins, tmp_path) -> None:
    path = tmp_path / "penguins.csv"
    penguins.to_csv(path, index=False)
    _, ours = data_of(home, f"task.dataset={DATA_ID}", "task.download=false", "seed=2")
    table = load_data(to_plain(compose_config([
        "task=table", f"task.path={path}", "task.target=species", "task.kind=multiclass",
        "loss=ce", "seed=2"])))
    for name in ("train", "val", "test"):
        for a, b in zip(ours.numpy(name), table.numpy(name), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_set_not_in_the_cache_offline_is_one_line(home, no_network) -> None:
    with pytest.raises(ConfigError) as err:
        data_of(home, "task.dataset=31", "task.download=false")
    message = str(err.value)
    assert "OpenML data set 31 is not in the cache at" in message
    assert str(home / "openml" / "openml.org") in message and "needs a download" in message
    with pytest.raises(ConfigError, match="needs a download, which failed") as err:
        data_of(home, "task.dataset=31")  # download=true on a machine without network
    assert "\n" not in str(err.value)


def test_the_suites_list_their_data_ids_with_the_reference() -> None:
    expected = {"openml_cc18": (72, "Bischl"), "openml_ctr23": (35, "Fischer")}
    for name, (count, author) in expected.items():
        text = resources.files("lossbench.conf").joinpath(f"suite/{name}.yaml").read_text()
        assert author in text and "study" in text
        params = yaml.safe_load(text)["hydra"]["sweeper"]["params"]
        ids = [int(i) for i in str(params["task.dataset"]).split(",")]
        assert len(ids) == len(set(ids)) == count
        assert math.prod(len(str(v).split(",")) for v in params.values()) > count
    assert 31 in ids or 44956 in ids


@pytest.fixture(scope="module")
def cli_runs(home, new_cli) -> dict:
    """A slice of +suite=openml_cc18 from the cache, and a set missing from it: side by side."""
    started = {
        "suite": new_cli("openml_suite").start(
            "-m", "+suite=openml_cc18", f"task.dataset={DATA_ID}", "loss=ce,mse", "seed=0",
            f"task.data_home={home}", "task.download=false", "trainer.max_epochs=2",
            "logger=none", "threads=1"),
        "miss": new_cli("openml_miss").start(
            "task=openml", "task.dataset=31", f"task.data_home={home}", "task.download=false",
            "logger=none"),
    }
    return {name: run.wait() for name, run in started.items()}


def test_a_suite_slice_trains_from_the_cache_through_the_cli(cli_runs) -> None:
    proc = cli_runs["suite"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"sweep done: 2 of 2 jobs \(1 ran: 1 ok; 1 skipped\)", proc.stdout), \
        proc.stdout
    found = [json.loads(p.read_text()) for p in Path(proc.cwd).rglob("results.json")]
    ok = [r for r in found if r["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["task"] == f"openml_{DATA_ID}"
    assert ok[0]["data"]["name"] == "penguins" and ok[0]["baselines"]


def test_cli_offline_miss_is_one_line(cli_runs) -> None:
    proc = cli_runs["miss"]
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a download" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
