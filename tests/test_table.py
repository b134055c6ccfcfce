"""`task=table`: a user's own CSV, TSV or Parquet file trains like a bundled task.

The tables are real (the Palmer penguins, as a user would export them: an id column, text
labels, missing values, a rare level); preprocessing is checked against scikit-learn's own
ColumnTransformer on the same training rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench.config import compose_config
from lossbench.data.loading import load_data
from lossbench.environment import to_plain
from lossbench.validation import ConfigError, validate_config


def penguins_frame() -> pd.DataFrame:
    """The penguins with what users' tables have: ids, a bool, a level seen in 3 rows."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    frame.insert(0, "id", [f"P{i:04d}" for i in range(len(frame))])
    frame["tagged"] = frame["year"] % 2 == 0
    frame.loc[[5, 100, 200], "island"] = "Litchfield"  # rare: grouped with other rare levels
    return frame


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tables")
    frame = penguins_frame()
    paths = {
        "csv": folder / "penguins.csv", "tsv": folder / "penguins.tsv",
        "parquet": folder / "penguins.parquet",
    }
    frame.to_csv(paths["csv"], index=False)
    frame.to_csv(paths["tsv"], index=False, sep="\t")
    frame.to_parquet(paths["parquet"], index=False)
    (folder / "empty.csv").write_text("")
    (folder / "header_only.csv").write_text("a,b,price\n")
    (folder / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "data.xlsx").write_bytes(b"not read")
    few = pd.concat([frame[frame.species == "Adelie"].head(30),
                     frame[frame.species == "Chinstrap"].head(3),
                     frame[frame.species == "Gentoo"].head(30)])
    few.to_csv(folder / "few.csv", index=False)
    one = frame.assign(kingdom="Animalia")
    one.to_csv(folder / "one_class.csv", index=False)
    paths["folder"] = folder
    return paths


def config(*overrides: str) -> dict:
    cfg = to_plain(compose_config(["logger=none", *overrides]))
    validate_config(cfg)
    return cfg


def data_of(*overrides: str):
    return load_data(config(*overrides))


# Runs through the real CLI: one sweep over three targets of one file, each its own kind.


@pytest.fixture(scope="module")
def runs(tables, new_cli) -> dict[str, dict]:
    proc = new_cli("table_sweep").start(
        "-m", "task=table", f"task.path={tables['csv']}", "task.target=species,body_mass_g,sex",
        "task.drop=[id]", "logger=none", "trainer.max_epochs=3", "threads=1").wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = [json.loads(p.read_text()) for p in Path(proc.cwd).rglob("results.json")]
    assert len(found) == 3, proc.stdout
    return {r["config"]["task"]["target"]: r for r in found}


def test_a_csv_with_text_labels_trains_and_records_what_it_chose(runs) -> None:
    results = runs["species"]
    assert results["status"] == "ok", results["reason"]
    data = results["data"]
    assert data["source"] == "table" and data["format"] == "csv"
    assert data["kind"] == "multiclass"
    assert "text" in data["kind_reason"] and "species" in data["kind_reason"]
    assert data["class_names"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert (data["rows"], data["rows_dropped"]) == (344, 0)
    assert data["split"] == {"train": 206, "val": 69, "test": 69}
    assert "id" not in data["columns"]["categorical"] + data["columns"]["numeric"]
    assert set(data["columns"]["categorical"]) == {"island", "sex", "tagged"}
    assert results["config"]["loss"]["name"] == "ce"  # loss=auto: the kind's natural loss
    # Baselines sit beside it: logistic regression on the same preprocessed split.
    logistic = results["baselines"]["logistic_regression"]["test/acc"]
    assert logistic > 0.9
    assert results["metrics"]["best"]["test/acc"] > 0.5


def test_a_numeric_target_regresses_and_drops_rows_without_a_target(runs) -> None:
    results = runs["body_mass_g"]
    assert results["status"] == "ok", results["reason"]
    data = results["data"]
    assert data["kind"] == "regression" and results["config"]["loss"]["name"] == "mse"
    assert data["rows_dropped"] == 2  # two penguins were never weighed
    assert sum(data["split"].values()) == 342
    assert "class_names" not in data
    assert "linear_regression" in results["baselines"]
    assert results["metrics"]["best"]["test/mae"] > 0


def test_a_binary_text_target_keeps_its_names(runs) -> None:
    results = runs["sex"]
    assert results["status"] == "ok", results["reason"]
    data = results["data"]
    assert data["kind"] == "binary" and data["class_names"] == ["female", "male"]
    assert data["positive_class"] == "male"
    assert data["rows_dropped"] == 11
    assert results["config"]["loss"]["name"] == "bce_logits"
    assert "logistic_regression" in results["baselines"]


@pytest.mark.parametrize(("fmt", "target", "perturb", "check"), [
    ("csv", "species", ("perturb=label_noise", "perturb.rate=0.1"),
     lambda p: p["n_affected"] == round(0.1 * 206)),
    ("parquet", "body_mass_g", ("perturb=outliers",), lambda p: p["n_affected"] == 20),
    ("tsv", "sex", ("perturb=imbalance", "perturb.positive_fraction=0.5"),
     lambda p: p["n_train_after"] < p["n_train_before"]),
])
def test_every_format_reads_alike_and_perturbs_the_training_split(
    tables, fmt, target, perturb, check
) -> None:
    clean = data_of("task=table", f"task.path={tables['csv']}", f"task.target={target}")
    data = data_of("task=table", f"task.path={tables[fmt]}", f"task.target={target}", *perturb)
    assert data.info["format"] == fmt and check(data.perturb), data.perturb
    for name in ("val", "test"):  # perturbations touch the training split only
        np.testing.assert_allclose(  # (in target units: outliers move the scaling)
            data.numpy(name)[1] * data.target_std + data.target_mean,
            clean.numpy(name)[1] * clean.target_std + clean.target_mean, rtol=1e-5)


# Preprocessing is scikit-learn's, fitted on the training split only.


def sklearn_split(y: np.ndarray, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=seed,
                                  stratify=y if stratify else None)
    train, val = train_test_split(rest, test_size=0.25, random_state=seed,
                                  stratify=y[rest] if stratify else None)
    return train, val, test


def test_features_equal_scikit_learns_column_transformer(tables) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = data_of("task=table", f"task.path={tables['csv']}", "task.target=species",
                   "task.drop=[id]", "seed=3")
    frame = pd.read_csv(tables["csv"])
    y = pd.factorize(frame["species"], sort=True)[0]
    train, val, test = sklearn_split(y, 3, stratify=True)
    x = frame.drop(columns=["id", "species"])
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    categorical = ["island", "sex", "tagged"]
    x[categorical] = x[categorical].astype(str).where(x[categorical].notna(), np.nan)
    reference = ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)),
         categorical),
    ]).fit(x.iloc[train])
    for name, rows in (("train", train), ("val", val), ("test", test)):
        ours, labels = data.numpy(name)
        np.testing.assert_allclose(ours, reference.transform(x.iloc[rows]), atol=1e-5)
        np.testing.assert_array_equal(labels, y[rows])
    # Training statistics only: the standardised training columns have mean 0, std 1 ...
    train_x = data.numpy("train")[0][:, :5]
    np.testing.assert_allclose(train_x.mean(0), 0, atol=1e-5)
    # ... and the island "Litchfield" (3 rows) is grouped with the rare levels, not a column.
    names = list(reference.get_feature_names_out())
    assert not any("Litchfield" in n for n in names)
    assert data.info["columns"]["encoded"] == len(names)


def test_levels_unseen_in_training_are_ignored() -> None:
    from lossbench.data.preprocess import fit_preprocessor

    train = pd.DataFrame({"colour": ["red"] * 6 + ["blue"] * 6, "size": np.arange(12.0)})
    prep = fit_preprocessor(train)
    out = prep.transform(pd.DataFrame({"colour": ["green", "red", None], "size": [1.0, 2, 3]}))
    assert out.shape == (3, 3)
    np.testing.assert_array_equal(out[0, 1:], [0, 0])  # unseen: no level set
    np.testing.assert_array_equal(out[1, 1:], [0, 1])  # red (levels sorted: blue, red)
    assert out[2, 1:].sum() == 1  # missing: imputed with a level seen in training


def test_the_split_is_the_bundled_sets_seeded_stratified_split(tables) -> None:
    a = data_of("task=table", f"task.path={tables['csv']}", "task.target=species", "seed=5")
    b = data_of("task=table", f"task.path={tables['parquet']}", "task.target=species", "seed=5")
    for name in ("train", "val", "test"):
        np.testing.assert_allclose(a.numpy(name)[0], b.numpy(name)[0], atol=1e-6)
    y = pd.factorize(pd.read_csv(tables["csv"])["species"], sort=True)[0]
    train, _, _ = sklearn_split(y, 5, stratify=True)
    np.testing.assert_array_equal(a.numpy("train")[1], y[train])
    share = np.bincount(a.numpy("test")[1]) / len(a.y_test)
    np.testing.assert_allclose(share, np.bincount(y) / len(y), atol=0.02)


@pytest.mark.parametrize(("target", "kind", "loss"), [
    ("year", "multiclass", "ce"),  # 3 whole numbers: classes
    ("flipper_length_mm", "regression", "mse"),
    ("tagged", "binary", "bce_logits"),
])
def test_kind_auto_infers_the_kind_from_the_target(tables, target, kind, loss) -> None:
    cfg = config("task=table", f"task.path={tables['csv']}", f"task.target={target}")
    assert (cfg["task"]["kind"], cfg["loss"]["name"]) == (kind, loss)
    assert target in cfg["task"]["kind_reason"]


@pytest.mark.parametrize(("target", "kind"), [
    ("year", "regression"), ("flipper_length_mm", "ranking"), ("species", "embedding"),
])
def test_a_kind_can_be_forced(tables, target, kind) -> None:
    data = data_of("task=table", f"task.path={tables['csv']}", f"task.target={target}",
                   f"task.kind={kind}", "loss=auto")
    assert data.kind == kind
    assert data.info["kind_reason"] == f"task.kind={kind} was given"


# Bad input: one line that says what is wrong (in-process here; through the CLI below).


@pytest.mark.parametrize(("overrides", "expected"), [
    (("task.path=nope.csv", "task.target=x"), ("nope.csv", "no such file")),
    (("task.path={folder}/penguins.csv", "task.target=prize"),
     ("'prize' is not a column", "columns: id, species, island")),
    (("task.path={folder}/data.xlsx", "task.target=x"), ("unsupported file type", ".csv")),
    (("task.path={folder}/empty.csv", "task.target=x"), ("empty",)),
    (("task.path={folder}/header_only.csv", "task.target=price"), ("no rows",)),
    (("task.path={folder}/broken.parquet", "task.target=x"), ("cannot read", "PARQUET")),
    (("task.path={folder}/few.csv", "task.target=species"),
     ("too few rows", "class 'Chinstrap' has 3", "at least 5")),
    (("task.path={folder}/few.csv", "task.target=island", "task.kind=multiclass"),
     ("too few rows",)),
    (("task.path={folder}/one_class.csv", "task.target=kingdom"), ("one class", "Animalia")),
    (("task.path={folder}/penguins.csv", "task.target=island", "task.kind=regression"),
     ("needs a numeric target", "island")),
    (("task.path={folder}/penguins.csv", "task.target=island", "task.kind=binary"),
     ("2 classes", "has 4")),
    (("task.path={folder}/penguins.csv", "task.target=sex", "task.drop=[sex]"),
     ("task.drop names the target",)),
    (("task.path={folder}/penguins.csv", "task.target=sex", "task.drop=[ids]"),
     ("task.drop: 'ids' is not a column",)),
    (("task.path={folder}", "task.target=sex"), ("is a folder",)),
])
def test_bad_input_is_one_line(tables, overrides, expected) -> None:
    folder = tables["folder"]
    args = [o.format(folder=folder) for o in overrides]
    with pytest.raises(ConfigError) as err:
        data_of("task=table", *args)
    message = str(err.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message


def test_few_rows_say_how_many_are_needed(tables) -> None:
    with pytest.raises(ConfigError, match="class 'Chinstrap' has 3") as err:
        data_of("task=table", f"task.path={tables['folder']}/few.csv", "task.target=species")
    assert "stratified 60/20/20 split needs at least 5 of each class" in str(err.value)


def assert_one_line(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossbench: error: "), proc.stderr
    for text in expected:
        assert text in lines[0]


def test_cli_bad_input_is_one_line_and_nothing_half_written(tables, new_cli) -> None:
    proc = new_cli("bad_table").start(
        "task=table", f"task.path={tables['csv']}", "task.target=prize", "logger=none").wait()
    assert_one_line(proc, "'prize' is not a column", "body_mass_g")
    for path in Path(proc.cwd).rglob("results.json"):  # a complete record, or none
        results = json.loads(path.read_text())
        assert results["status"] == "failed" and "metrics" not in results


def test_parquet_without_pyarrow_says_what_to_install(tables, tmp_path: Path) -> None:
    """pyarrow shadowed by a package that cannot be imported, as on a machine without it."""
    shadow = tmp_path / "shadow"
    for name in ("pyarrow", "fastparquet"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('No module named {name}')")
    code = ("from lossbench.data.table import read_table; from pathlib import Path; "
            f"read_table(Path({str(tables['parquet'])!r}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "reading Parquet needs pyarrow: pip install pyarrow" in proc.stderr


@pytest.mark.parametrize(("overrides", "expected"), [
    ((), "task.path must be set: your file"),
    (("task.path=data.csv",), "task.target must be set: the column to predict"),
])
def test_unset_path_and_target_say_what_to_set(overrides, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        config("task=table", *overrides)
