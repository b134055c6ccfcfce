"""Real data sets shipped inside installed packages (scikit-learn, statsmodels, palmerpenguins):
the catalogue, and each set's rows as SourceData. Nothing is downloaded.

`python -m lossbench.data.bundled` prints the catalogue (rows, features, kind, package,
licence, citation).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossbench.data.sources import CLASS_KINDS, SourceData
from lossbench.validation import ConfigError

UCI = "CC BY 4.0 (UCI Machine Learning Repository)"
STATSMODELS = "statsmodels' dataset notes: "


@dataclass(frozen=True)
class BundledSet:
    """One bundled data set: what it predicts, where it ships, and whom to cite."""

    name: str
    kind: str
    package: str
    target: str
    summary: str
    licence: str
    citation: str
    load: Callable[[], tuple[Any, np.ndarray]]
    categorical: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None
    images: bool = False


def _sklearn(name: str) -> Callable[[], tuple[Any, np.ndarray]]:
    def load() -> tuple[Any, np.ndarray]:
        from sklearn import datasets

        x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        return x.astype(np.float32), y

    return load


def _digit_images() -> tuple[Any, np.ndarray]:
    """scikit-learn's 1,797 real handwritten digits as 1×8×8 uint8 images (0..16 -> 0..255)."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(pixels).unsqueeze(1).contiguous(), digits.target


def _statsmodels(name: str) -> Any:
    import importlib

    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _frame_target(
    frame: Any, target: str, drop: tuple[str, ...] = (), keep: tuple[str, ...] | None = None
) -> tuple[Any, np.ndarray]:
    y = frame[target].to_numpy()
    columns = keep if keep is not None else [
        c for c in frame.columns if c != target and c not in drop]
    return frame[list(columns)].reset_index(drop=True), y


def _fair() -> tuple[Any, np.ndarray]:
    return _frame_target(_statsmodels("fair"), "affairs")


def _fair_affair() -> tuple[Any, np.ndarray]:
    # statsmodels' own logit example: any time spent in affairs (affairs > 0).
    frame = _statsmodels("fair")
    x, _ = _frame_target(frame, "affairs")
    return x, (frame["affairs"].to_numpy() > 0).astype(np.int64)


def _randhie() -> tuple[Any, np.ndarray]:
    return _frame_target(_statsmodels("randhie"), "mdvis")


def _randhie_any_visit() -> tuple[Any, np.ndarray]:
    # The first part of the HIE's two-part model of medical use: any visit at all.
    frame = _statsmodels("randhie")
    x, _ = _frame_target(frame, "mdvis")
    return x, (frame["mdvis"].to_numpy() > 0).astype(np.int64)


def _star98() -> tuple[Any, np.ndarray]:
    # statsmodels' binomial GLM example: the share of a district's students above the median.
    frame = _statsmodels("star98")
    share = frame["NABOVE"] / (frame["NABOVE"] + frame["NBELOW"])
    x, _ = _frame_target(frame, "NABOVE", drop=("NBELOW",))
    return x, share.to_numpy(dtype=np.float64)


def _grunfeld() -> tuple[Any, np.ndarray]:
    return _frame_target(_statsmodels("grunfeld"), "invest")


def _anes96_vote() -> tuple[Any, np.ndarray]:
    return _frame_target(_statsmodels("anes96"), "vote", drop=("popul",))


def _anes96_pid() -> tuple[Any, np.ndarray]:
    # statsmodels' MNLogit example: party identification from the same five regressors.
    return _frame_target(_statsmodels("anes96"), "PID",
                         keep=("logpopul", "selfLR", "age", "educ", "income"))


def _modechoice() -> tuple[Any, np.ndarray]:
    """One row per traveller (210): each mode's terminal time, in-vehicle cost and time and
    generalised cost, with household income and party size; the target is the chosen mode."""
    frame = _statsmodels("modechoice")
    modes = {1.0: "air", 2.0: "train", 3.0: "bus", 4.0: "car"}
    wide = frame.pivot(index="individual", columns="mode", values=["ttme", "invc", "invt", "gc"])
    wide.columns = [f"{var}_{modes[mode]}" for var, mode in wide.columns]
    person = frame.groupby("individual")[["hinc", "psize"]].first()
    chosen = frame[frame["choice"] == 1].set_index("individual")["mode"]
    x = wide.join(person).reset_index(drop=True)
    return x, chosen.loc[wide.index].to_numpy().astype(np.int64) - 1


def _penguins(target: str) -> Callable[[], tuple[Any, np.ndarray]]:
    def load() -> tuple[Any, np.ndarray]:
        from palmerpenguins import load_penguins

        return _frame_target(load_penguins(), target)

    return load


PENGUINS = ("CC0 (palmerpenguins: data by Gorman, Williams and Fraser)",
            "Gorman KB, Williams TD, Fraser WR (2014) PLoS ONE 9(3): e90081; "
            "Horst AM, Hill AP, Gorman KB (2020) palmerpenguins, doi:10.5281/zenodo.3960218")

CATALOGUE: dict[str, BundledSet] = {s.name: s for s in (
    # regression
    BundledSet("diabetes", "regression", "scikit-learn", "disease progression after a year",
               "442 patients, 10 baseline measurements", "BSD-3-Clause (shipped in scikit-learn)",
               "Efron B, Hastie T, Johnstone I, Tibshirani R (2004) Least Angle Regression, "
               "Annals of Statistics 32(2)", _sklearn("diabetes")),
    BundledSet("fair", "regression", "statsmodels", "affairs (time spent in affairs)",
               "6,366 women surveyed by Redbook (1974)",
               STATSMODELS + "included with permission of the author",
               "Fair R (1978) A Theory of Extramarital Affairs, J. Political Economy 86(1)",
               _fair),
    BundledSet("randhie", "regression", "statsmodels", "mdvis (outpatient visits a year)",
               "20,190 person-years of the RAND Health Insurance Experiment",
               STATSMODELS + "public domain",
               "Cameron AC, Trivedi PK (2005) Microeconometrics, Cambridge; data: RAND HIE",
               _randhie),
    BundledSet("star98", "regression", "statsmodels",
               "share of a district's students above the national math median",
               "303 California school districts, 20 district measures",
               STATSMODELS + "used with express permission from the original author",
               "Gill J (2001) Generalized Linear Models: A Unified Approach, Sage", _star98),
    BundledSet("grunfeld", "regression", "statsmodels", "invest (gross investment)",
               "220 firm-years, 11 US firms 1935-1954", STATSMODELS + "public domain",
               "Grunfeld Y (1958) The Determinants of Corporate Investment, PhD thesis; "
               "Kleiber C, Zeileis A (2010) The Grunfeld Data at 50, German Economic Review",
               _grunfeld, categorical=("firm",)),
    BundledSet("penguins_mass", "regression", "palmerpenguins", "body_mass_g",
               "344 penguins (2 without a mass), species, island and sex categorical", *PENGUINS,
               _penguins("body_mass_g")),
    # binary
    BundledSet("breast_cancer", "binary", "scikit-learn", "benign or malignant tumour",
               "569 biopsies, 30 nucleus features", UCI,
               "Street WN, Wolberg WH, Mangasarian OL (1993) Nuclear feature extraction for "
               "breast tumor diagnosis, SPIE 1905", _sklearn("breast_cancer"),
               class_names=("malignant", "benign")),
    BundledSet("fair_affair", "binary", "statsmodels", "had an affair (affairs > 0)",
               "fair's 6,366 women; the binary target of statsmodels' logit example",
               STATSMODELS + "included with permission of the author",
               "Fair R (1978) A Theory of Extramarital Affairs, J. Political Economy 86(1)",
               _fair_affair, class_names=("no", "yes")),
    BundledSet("randhie_any_visit", "binary", "statsmodels", "any outpatient visit (mdvis > 0)",
               "randhie's 20,190 person-years; the first part of the HIE's two-part model",
               STATSMODELS + "public domain",
               "Duan N, Manning WG, Morris CN, Newhouse JP (1983) A Comparison of Alternative "
               "Models for the Demand for Medical Care, J. Business & Economic Statistics 1(2)",
               _randhie_any_visit, class_names=("no", "yes")),
    BundledSet("anes96_vote", "binary", "statsmodels", "vote (Clinton or Dole, 1996)",
               "944 respondents of the 1996 American National Election Study",
               STATSMODELS + "public domain",
               "American National Election Studies (1996); Rosenstone SJ, Kinder DR, Miller WE",
               _anes96_vote, class_names=("Clinton", "Dole")),
    BundledSet("penguins_sex", "binary", "palmerpenguins", "sex (female or male)",
               "344 penguins, 11 without a recorded sex (dropped)", *PENGUINS,
               _penguins("sex")),
    # multiclass
    BundledSet("digits", "multiclass", "scikit-learn", "digit 0-9",
               "1,797 8x8 handwritten digits as 64 pixel features", UCI,
               "Alpaydin E, Kaynak C (1998) Optical Recognition of Handwritten Digits, UCI",
               _sklearn("digits")),
    BundledSet("wine", "multiclass", "scikit-learn", "cultivar (3)",
               "178 wines, 13 chemical measurements", UCI,
               "Aeberhard S, Forina M (1991) Wine, UCI", _sklearn("wine")),
    BundledSet("iris", "multiclass", "scikit-learn", "species (3)", "150 flowers, 4 measurements",
               UCI, "Fisher RA (1936) The use of multiple measurements in taxonomic problems, "
               "Annals of Eugenics 7(2)", _sklearn("iris"),
               class_names=("setosa", "versicolor", "virginica")),
    BundledSet("penguins", "multiclass", "palmerpenguins", "species (Adelie, Chinstrap, Gentoo)",
               "344 penguins; island and sex categorical, missing values", *PENGUINS,
               _penguins("species")),
    BundledSet("anes96_pid", "multiclass", "statsmodels", "PID (7-point party identification)",
               "944 respondents; statsmodels' MNLogit example and its 5 regressors",
               STATSMODELS + "public domain",
               "American National Election Studies (1996); Rosenstone SJ, Kinder DR, Miller WE",
               _anes96_pid, class_names=("strong Democrat", "weak Democrat",
                                         "independent Democrat", "independent",
                                         "independent Republican", "weak Republican",
                                         "strong Republican")),
    BundledSet("modechoice", "multiclass", "statsmodels", "travel mode (air, train, bus, car)",
               "210 travellers between Sydney and Melbourne, each mode's times and costs",
               STATSMODELS + "public domain",
               "Greene WH, Hensher D (1997) Multinomial logit and discrete choice models, "
               "in LIMDEP 7.0 manual; Greene WH (2011) Econometric Analysis, 7th ed.",
               _modechoice, class_names=("air", "train", "bus", "car")),
    # real images, offline: the CNN path without a download
    BundledSet("digits_images", "multiclass", "scikit-learn", "digit 0-9",
               "digits' 1,797 handwritten digits as 1x8x8 images (for model=cnn)", UCI,
               "Alpaydin E, Kaynak C (1998) Optical Recognition of Handwritten Digits, UCI",
               _digit_images, images=True),
)}


def datasets_for(kind: str) -> tuple[str, ...]:
    """Bundled sets a task kind can use: numeric targets for regression and ranking, class
    targets for the class kinds (binary only on two-class sets)."""
    fits = {"regression": ("regression",), "ranking": ("regression",), "binary": ("binary",),
            "multiclass": CLASS_KINDS, "embedding": CLASS_KINDS}.get(kind, ())
    return tuple(s.name for s in CATALOGUE.values() if s.kind in fits)


def tabular_sets(kind: str) -> tuple[str, ...]:
    """The offline suite's data sets of `kind` (conf/suite/tabular.yaml lists these)."""
    return tuple(s.name for s in CATALOGUE.values() if s.kind == kind and not s.images)


def check_fits(dataset: str, kind: str) -> None:
    if dataset not in CATALOGUE:
        raise ConfigError(f"unknown dataset '{dataset}' (choose from: {', '.join(CATALOGUE)})")
    if dataset not in datasets_for(kind):
        raise ConfigError(f"dataset '{dataset}' does not fit task kind '{kind}' "
                          f"(allowed: {', '.join(datasets_for(kind))})")


@functools.cache
def load_bundled(dataset: str) -> SourceData:
    """A bundled set's rows, parsed once per process (a sweep's jobs share them); arrays are
    read-only so no caller can change another's copy."""
    if dataset not in CATALOGUE:
        raise ConfigError(f"unknown dataset '{dataset}' (choose from: {', '.join(CATALOGUE)})")
    entry = CATALOGUE[dataset]
    features, target = entry.load()
    target = np.asarray(target)
    if isinstance(features, np.ndarray):
        features.flags.writeable = False
    target.flags.writeable = False
    return SourceData(
        name=entry.name, features=features, target=target,
        info={"source": "bundled", "package": entry.package, "target": entry.target,
              "licence": entry.licence, "citation": entry.citation},
        kind=entry.kind, kind_reason=f"the catalogue's kind for {entry.name}",
        categorical=entry.categorical, class_names=entry.class_names,
    )


def catalogue_rows() -> list[dict[str, Any]]:
    """One row per bundled set: name, kind, rows, features, package, licence, citation."""
    rows = []
    for entry in CATALOGUE.values():
        source = load_bundled(entry.name)
        feats = source.features
        shape = "x".join(map(str, feats.shape[1:])) if entry.images else str(feats.shape[1])
        rows.append({
            "name": entry.name, "kind": entry.kind, "rows": len(source.target),
            "features": shape, "target": entry.target, "package": entry.package,
            "licence": entry.licence, "citation": entry.citation,
        })
    return rows


def markdown() -> str:
    keys = ("name", "kind", "rows", "features", "target", "package", "licence", "citation")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in catalogue_rows()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.data.bundled",
                                     description="The bundled real data sets.")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
        return
    print(text(shutil.get_terminal_size().columns))


def text(width: int = 80) -> str:
    """One entry per set, wrapped to `width` (never cut): name, kind, size, target, then the
    package, licence and citation indented below."""
    lines = ["Bundled data sets (shipped in installed packages; nothing is downloaded):"]
    indent = "    "
    for row in catalogue_rows():
        head = (f"{row['name']}  {row['kind']}, {row['rows']} rows x {row['features']} "
                f"features; target: {row['target']}")
        lines += textwrap.wrap(head, width, subsequent_indent=indent)
        for part in (f"from {row['package']}; licence: {row['licence']}",
                     f"cite: {row['citation']}"):
            lines += textwrap.wrap(part, width, initial_indent=indent, subsequent_indent=indent)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
