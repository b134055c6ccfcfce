"""Tables to model inputs with scikit-learn, fitted on the training split only: numeric columns
imputed (median) and standardised; text, bool and category columns imputed (most frequent
level) and one-hot encoded, rare levels grouped, levels unseen in training ignored."""

from __future__ import annotations

from typing import Any

import numpy as np


def take_rows(table: Any, rows: np.ndarray) -> Any:
    """Rows of a DataFrame (by position) or of an array."""
    return table.iloc[rows] if hasattr(table, "iloc") else table[rows]


def column_types(frame: Any, categorical: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names: numbers are numeric unless named in `categorical`;
    text, bools and pandas categories are categorical."""
    from pandas.api import types

    numeric, other = [], []
    for name in frame.columns:
        dtype = frame[name].dtype
        is_number = types.is_numeric_dtype(dtype) and not types.is_bool_dtype(dtype)
        (numeric if is_number and name not in categorical else other).append(name)
    return numeric, other


def as_levels(frame: Any, columns: list[str]) -> Any:
    """Categorical columns as text (missing stays NaN): one type per column for the encoder."""
    if not columns:
        return frame
    frame = frame.copy()
    for name in columns:
        col = frame[name]
        mask = col.isna()
        frame[name] = col.astype(str).where(~mask, np.nan)
    return frame


def make_column_transformer(
    numeric: list[Any], categorical: list[Any], min_frequency: int | float | None = 5
):
    """The ColumnTransformer every table goes through (unfitted)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if numeric:
        parts.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=min_frequency,
                sparse_output=False, dtype=np.float32,
            )),
        ]), categorical))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0,
                             verbose_feature_names_out=False)


class TablePreprocessor:
    """A ColumnTransformer fitted on the training rows; `transform` gives float32 arrays."""

    def __init__(
        self, train: Any, categorical: tuple[str, ...] = (),
        min_frequency: int | float | None = 5,
    ) -> None:
        if hasattr(train, "columns"):
            self.numeric, self.categorical = column_types(train, categorical)
        else:  # a numeric array: every column is a number
            self.numeric, self.categorical = list(range(np.asarray(train).shape[1])), []
        if not self.numeric and not self.categorical:
            raise ValueError("the table has no feature columns left besides the target")
        self.transformer = make_column_transformer(self.numeric, self.categorical, min_frequency)
        self.transformer.fit(self._levels(train))
        names = self.transformer.get_feature_names_out()
        if len(names) == 0:
            raise ValueError("no feature column has a value in the training split")
        named = hasattr(train, "columns")
        self.columns = {
            "numeric": [str(c) for c in self.numeric] if named else len(self.numeric),
            "categorical": [str(c) for c in self.categorical],
            "encoded": len(names),
        }

    def _levels(self, table: Any) -> Any:
        return as_levels(table, self.categorical) if self.categorical else table

    def transform(self, table: Any) -> np.ndarray:
        out = self.transformer.transform(self._levels(table))
        return np.ascontiguousarray(out, dtype=np.float32)


def fit_preprocessor(
    train: Any, categorical: tuple[str, ...] = (), min_frequency: int | float | None = 5
) -> TablePreprocessor:
    return TablePreprocessor(train, tuple(categorical), min_frequency)
