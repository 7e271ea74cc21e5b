"""The layouts a landing file may come in (ours, scikit-learn's frame, the WDBC CSV, UCI's ``wdbc.data``),
recognised from the file itself, and their mapping to ours. What each layout holds and how ambiguous files
are refused is described in docs/architecture.md.
"""

import csv
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core.data import cells, landing
from turbine_dagster.core.schema import BENIGN, CASE_ID, FEATURE_COLUMNS, MALIGNANT, TARGET

INTERNAL = "internal"
SKLEARN_FRAME = "sklearn_frame"
WDBC_CSV = "wdbc_csv"
UCI_WDBC_DATA = "uci_wdbc_data"
LAYOUTS = {
    INTERNAL: f"'{CASE_ID}', the 30 feature columns of turbine_dagster.core.schema.FEATURE_COLUMNS and, labeled, "
    f"'{TARGET}' (0 = malignant)",
    SKLEARN_FRAME: f"scikit-learn's frame as is: the 30 features ('mean radius' ...) and, labeled, '{TARGET}'; no id",
    WDBC_CSV: "the WDBC CSV: 'id', 'diagnosis' (M/B), 'radius_mean' ... 'fractal_dimension_worst'",
    UCI_WDBC_DATA: "UCI's wdbc.data: no header; id, diagnosis (M/B), the 30 features",
}
"""Each layout's name and, in a phrase, what it holds: the names recorded in metadata."""

ID = "id"
DIAGNOSIS = "diagnosis"


def _snake(feature: str) -> str:
    """The WDBC CSV's name of a scikit-learn feature name: 'mean radius' -> 'radius_mean',
    'radius error' -> 'radius_se', 'worst concave points' -> 'concave_points_worst'."""
    for prefix, suffix in (("mean ", "mean"), ("worst ", "worst")):
        if feature.startswith(prefix):
            return f"{feature.removeprefix(prefix).replace(' ', '_')}_{suffix}"
    return f"{feature.removesuffix(' error').replace(' ', '_')}_se"


SNAKE_FEATURES: tuple[str, ...] = tuple(_snake(feature) for feature in FEATURE_COLUMNS)
"""The 30 feature names of the WDBC CSV, in FEATURE_COLUMNS order."""


def _key(name: str) -> str:
    """How names are compared: case, surrounding whitespace, and runs of spaces or underscores do not count."""
    return re.sub(r"[\s_]+", " ", name.strip().lower()).strip()


_UNNAMED = re.compile(r"^(unnamed: ?\d+)?$")  # '' in a header; 'Unnamed: 32' once pandas has read and written it
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")  # pandas' own index in Parquet: metadata, not data
_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Layout:
    """How one landing file is laid out, and how its columns map to ours."""

    name: str
    """One of LAYOUTS."""
    columns: tuple[str, ...]
    """Every column of the file, as the reader names it (a CSV's names are given to the reader)."""
    features: tuple[str, ...]
    """The file's 30 feature columns, in FEATURE_COLUMNS order."""
    case_id: str | None
    """The column holding the case id; None where the id is derived from the row's content."""
    label: str | None = None
    """The label column (``target`` or ``diagnosis``) of a labeled file; None in a scoring file."""
    diagnosis: bool = False
    """The label is coded M/B."""
    unnamed: tuple[str, ...] = ()
    """Columns without a name: read only to check they are empty."""
    header: bool = True
    """False for UCI's wdbc.data, whose first line is a case."""

    @property
    def read_columns(self) -> list[str]:
        return [
            *([self.case_id] if self.case_id else []),
            *self.features,
            *([self.label] if self.label else []),
            *self.unnamed,
        ]

    @property
    def label_columns(self) -> list[str]:
        """The columns that give a labeled file's case ids and labels: the id column (the features where the id
        comes from the row's content), the label, and the unnamed columns (checked empty, as in a whole read)."""
        return [
            *([self.case_id] if self.case_id else self.features),
            *([self.label] if self.label else []),
            *self.unnamed,
        ]

    @property
    def description(self) -> str:
        return LAYOUTS[self.name]

    def to_internal(self, batch: pa.RecordBatch | pa.Table, file: str) -> pa.RecordBatch:
        """The batch in our layout: ``case_id`` (text), the feature columns as read, and ``target`` when the
        file is labeled (``diagnosis`` mapped M -> 0, B -> 1; any other value kept as it is, for the label
        check to report)."""
        self._check_unnamed(batch, file)
        arrays = [self._case_ids(batch)]
        arrays += [cells.decoded_array(batch.column(feature)) for feature in self.features]
        names = [CASE_ID, *FEATURE_COLUMNS]
        if self.label:
            arrays.append(self._labels(batch, file))
            names.append(TARGET)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def to_labels(self, batch: pa.RecordBatch | pa.Table, file: str) -> pa.RecordBatch:
        """``case_id`` and ``target`` of a labeled file's batch of ``label_columns``, as ``to_internal`` gives them."""
        self._check_unnamed(batch, file)
        return pa.RecordBatch.from_arrays([self._case_ids(batch), self._labels(batch, file)], names=[CASE_ID, TARGET])

    def _check_unnamed(self, batch: pa.RecordBatch | pa.Table, file: str) -> None:
        for column in self.unnamed:
            values = batch.column(column)
            filled = ~cells.is_blank(values)
            if filled.any():
                raise landing.LandingError(_unnamed_message(file, column, _first(values, filled)))

    def _case_ids(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        if self.case_id:
            return cells.case_ids(batch.column(self.case_id))
        return cells.content_id(*(batch.column(feature) for feature in self.features))

    def _labels(self, batch: pa.RecordBatch | pa.Table, file: str) -> pa.Array:
        labels = cells.decoded_array(batch.column(self.label))
        return _diagnosis_codes(labels, file) if self.diagnosis else labels


def recognise(path: UPath, root: UPath, kind: str) -> Layout:
    """The layout of one landing file (``kind`` LABELED or SCORING), from its header or Parquet schema and its
    first row; LandingError naming the file when it is empty, ambiguous, or in no known layout."""
    name = landing.relative_name(path, root)
    try:
        if path.suffix.lower() == ".parquet":
            with path.open("rb") as handle:
                columns = pq.read_schema(handle).names
            return recognise_columns(columns, None, kind, name, text=False)
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header, first = next(reader, None), next(reader, None)
    except landing.LandingError:
        raise
    except Exception as error:  # the reader's own words, with the file named
        raise landing.LandingError(f"cannot read {name}: {_first_line(error)}") from error
    if header is None:
        raise landing.LandingError(f"{name} is empty; a landing file needs a header row and cases")
    return recognise_columns(header, first, kind, name, text=True)


def recognise_columns(header: list[str], first: list[str] | None, kind: str, file: str, *, text: bool) -> Layout:
    """The layout of a file whose first line (or Parquet schema) is ``header`` and whose next line is ``first``."""
    labeled = kind == landing.LABELED
    if text and (uci := _uci_layout(header, labeled, file)) is not None:
        return uci
    # A CSV's columns get the names given to its reader; a Parquet file's keep their own.
    names = [_reader_name(name, position) for position, name in enumerate(header)] if text else list(header)
    if text and first is not None:
        names = _fit_to_rows(names, first, file)
    by_key: dict[str, str] = {}
    for name in names:
        if _is_unnamed(name) or _PANDAS_INDEX.match(name):
            continue
        if _key(name) in by_key:
            raise landing.LandingError(
                f"{file} has two columns named {by_key[_key(name)]!r} and {name!r}; which one holds the data is "
                "ambiguous: drop or rename one"
            )
        by_key[_key(name)] = name
    unnamed = tuple(n for n in names if _is_unnamed(n))
    sklearn = [f for f in FEATURE_COLUMNS if _key(f) in by_key]
    snake = [f for f in SNAKE_FEATURES if _key(f) in by_key]
    if sklearn and snake:
        raise landing.LandingError(
            f"{file} mixes two layouts' feature names (scikit-learn's {sklearn[0]!r} and the WDBC CSV's {snake[0]!r}); "
            "which column holds which measurement is ambiguous: use one layout's names"
        )
    labels = [by_key[k] for k in (_key(TARGET), DIAGNOSIS) if k in by_key]
    if labeled and len(labels) > 1:
        raise landing.LandingError(
            f"{file} has both '{TARGET}' and '{DIAGNOSIS}'; which is the label is ambiguous: keep one"
        )

    if snake:
        layout_name, id_column, label_name = WDBC_CSV, ID, DIAGNOSIS
        expected = SNAKE_FEATURES
        if _key(CASE_ID) in by_key:
            raise landing.LandingError(
                f"{file} has both '{CASE_ID}' and the WDBC CSV's '{ID}'; which is the case id is ambiguous: keep one"
            )
    elif _key(CASE_ID) in by_key or len(sklearn) < len(FEATURE_COLUMNS):
        layout_name, id_column, label_name, expected = INTERNAL, CASE_ID, TARGET, FEATURE_COLUMNS
    else:
        layout_name, id_column, label_name, expected = SKLEARN_FRAME, None, TARGET, FEATURE_COLUMNS
        if ID in by_key:
            raise landing.LandingError(
                f"{file} has scikit-learn's feature names and a column '{by_key[ID]}'; scikit-learn's layout has no "
                f"id, so whether '{by_key[ID]}' is the case id is ambiguous: rename it '{CASE_ID}' to use it as the "
                "case id, or drop it"
            )
    required = [*([id_column] if id_column else []), *expected, *([label_name] if labeled else [])]
    missing = [column for column in required if _key(column) not in by_key]
    if missing:
        raise landing.LandingError(_missing_message(file, missing, layout_name, labeled, header))
    for position, name in enumerate(names):  # refused on the first case already, before any reading
        if name in unnamed and first is not None and position < len(first) and first[position].strip():
            raise landing.LandingError(_unnamed_message(file, name, first[position].strip()))
    return Layout(
        name=layout_name,
        columns=tuple(names),
        features=tuple(by_key[_key(feature)] for feature in expected),
        case_id=by_key[_key(id_column)] if id_column else None,
        label=by_key[_key(label_name)] if labeled else None,
        diagnosis=labeled and label_name == DIAGNOSIS,
        unnamed=unnamed,
    )


def _is_unnamed(name: str) -> bool:
    return bool(_UNNAMED.match(" ".join(name.split()).lower()))


def _reader_name(name: str, position: int) -> str:
    """The name a CSV column goes by: the header's, whitespace trimmed; 'unnamed: <position>' when it has none."""
    return f"unnamed: {position}" if _is_unnamed(name) else " ".join(name.split())


def _fit_to_rows(names: list[str], first: list[str], file: str) -> list[str]:
    """A header with more fields than the rows is fine when the extra ones are unnamed (the WDBC CSV's header
    ends with a comma, its rows do not); rows longer than the header are not."""
    if len(first) > len(names):
        raise landing.LandingError(
            f"{file}: the first case has {len(first)} fields but the header names {len(names)}; name every column "
            "or remove the extra fields"
        )
    extra = names[len(first) :]
    if extra and all(_is_unnamed(name) for name in extra):
        return names[: len(first)]
    return names


def _uci_layout(row: list[str], labeled: bool, file: str) -> Layout | None:
    """UCI's wdbc.data when ``row`` is a case (id, diagnosis, 30 numbers; or id and 30 numbers for scoring)
    rather than a header; None otherwise."""
    fields = [field.strip() for field in row]
    width = len(fields)
    while fields and fields[-1] == "":
        fields.pop()  # a trailing comma
    if not fields or not _INTEGER.match(fields[0]):
        return None
    numbers = fields[2:] if len(fields) == len(FEATURE_COLUMNS) + 2 else fields[1:]
    has_diagnosis = len(fields) == len(FEATURE_COLUMNS) + 2 and fields[1].upper() in ("M", "B")
    if len(numbers) != len(FEATURE_COLUMNS) or not all(cells.is_number(n) for n in numbers):
        return None
    if len(fields) == len(FEATURE_COLUMNS) + 2 and not has_diagnosis:
        return None
    if labeled and not has_diagnosis:
        raise landing.LandingError(
            f"{file} reads as UCI's wdbc.data without its diagnosis (id and 30 numbers, no header); a labeled file "
            "needs the diagnosis (M/B) after the id"
        )
    names = [ID, *([DIAGNOSIS] if has_diagnosis else []), *SNAKE_FEATURES]
    names += [f"unnamed: {position}" for position in range(len(names), width)]
    return Layout(
        name=UCI_WDBC_DATA,
        columns=tuple(names),
        features=SNAKE_FEATURES,
        case_id=ID,
        label=DIAGNOSIS if labeled else None,
        diagnosis=labeled,
        unnamed=tuple(names[len(fields) :]),
        header=False,
    )


def _missing_message(file: str, missing: list[str], layout_name: str, labeled: bool, header: list[str]) -> str:
    listed = ", ".join(f"'{column}'" for column in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    plural = "s" if len(missing) > 1 else ""
    if layout_name == WDBC_CSV:
        needs = "a file in the WDBC CSV layout needs 'id', the 30 snake_case feature columns" + (
            " and 'diagnosis' (M/B)" if labeled else ""
        )
    else:
        needs = (
            f"every {'labeled' if labeled else 'scoring'} file needs '{CASE_ID}', the "
            f"{len(FEATURE_COLUMNS)} feature columns of turbine_dagster.core.schema.FEATURE_COLUMNS"
            + (f" and '{TARGET}'" if labeled else "")
            + ", or comes in a published WDBC layout (scikit-learn's frame, the WDBC CSV, UCI's wdbc.data)"
        )
    hint = ""
    if len(header) == 1 and any(separator in header[0] for separator in (";", "\t", "|")):
        hint = " (the header reads as one column: the file seems separated by something other than commas)"
    return (
        f"column{plural} {listed}{more} missing in {file}{hint}; {needs} (fix the file or move it out of the "
        "landing zone)"
    )


def _unnamed_message(file: str, column: str, value: object) -> str:
    position = re.sub(r"\D", "", column)
    where = f"column {int(position) + 1}" if position else f"column {column!r}"
    return (
        f"{file}: {where} has no name but holds values (e.g. {value!r}); whether it is a case "
        f"id is ambiguous: name it '{CASE_ID}' if it holds the case ids, else drop it (pandas writes its row index "
        "this way: write with to_csv(index=False))"
    )


def _first(values: pa.Array | pa.ChunkedArray, mask: np.ndarray) -> object:
    return values[int(np.flatnonzero(mask)[0])].as_py()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:300] + " ..."


def _diagnosis_codes(values: pa.Array, file: str) -> pa.Array:
    """M -> MALIGNANT (0), B -> BENIGN (1). Other text is kept as it is (the label check names it), numbers are
    refused: copies of the data disagree on whether 1 means malignant."""
    text = pc.utf8_upper(pc.utf8_trim_whitespace(pc.cast(values, pa.string())))
    numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type)
    if numeric or pc.any(pc.is_in(text, pa.array(["0", "1", "0.0", "1.0"]))).as_py():
        raise landing.LandingError(
            f"{file}: '{DIAGNOSIS}' holds numbers; whether 1 means malignant or benign differs between copies of this "
            f"data: write it as M/B, or land a '{TARGET}' column with {MALIGNANT} = malignant and {BENIGN} = benign"
        )
    mapped = pc.if_else(
        pc.equal(text, "M"), str(MALIGNANT), pc.if_else(pc.equal(text, "B"), str(BENIGN), values.cast(pa.string()))
    )
    known = pc.is_in(text, pa.array(["M", "B"]))
    if pc.all(pc.or_kleene(known, pc.is_null(text))).as_py():
        return pc.cast(mapped, pa.int64())
    return mapped


# ---------------------------------------------------------------------------------------------
# Reading a whole file (training data)


def csv_read_options(layout: Layout, block_size: int | None = None) -> pacsv.ReadOptions:
    """The CSV reader's names are the layout's (whitespace trimmed, unnamed columns named), the header skipped."""
    options = {"column_names": list(layout.columns), "skip_rows": 1 if layout.header else 0}
    return pacsv.ReadOptions(**options, **({"block_size": block_size} if block_size else {}))


def csv_convert_options(layout: Layout) -> pacsv.ConvertOptions:
    """Every cell as text (``to_float64`` reads the numbers); the usual missing-value markers ('', NA, NaN, null,
    ...) read as null."""
    return pacsv.ConvertOptions(column_types={name: pa.string() for name in layout.columns}, strings_can_be_null=True)


def read_table(path: UPath, root: UPath, kind: str) -> tuple[pa.Table, Layout]:
    """One landing file, whole, in our layout (``case_id``, the features and, labeled, ``target``), with the
    layout it came in. Numeric columns are float64 (``target`` int64 when whole); a column holding text that
    is not a number keeps its text (a string column), so nothing is lost and the checks can name it."""
    layout = recognise(path, root, kind)
    name = landing.relative_name(path, root)
    batch = layout.to_internal(_read(path, layout, layout.read_columns, name), name)
    columns = {CASE_ID: batch.column(CASE_ID)}
    for column in batch.schema.names[1:]:
        columns[column] = numbers_or_text(batch.column(column), whole=column == TARGET)
    return pa.table(columns), layout


def read_labels(path: UPath, root: UPath) -> pa.Table:
    """``case_id`` and ``target`` of one labeled landing file, as ``read_table`` gives them, reading only the
    columns they come from."""
    layout = recognise(path, root, landing.LABELED)
    name = landing.relative_name(path, root)
    batch = layout.to_labels(_read(path, layout, layout.label_columns, name), name)
    return pa.table({CASE_ID: batch.column(CASE_ID), TARGET: numbers_or_text(batch.column(TARGET), whole=True)})


def _read(path: UPath, layout: Layout, columns: list[str], name: str) -> pa.Table:
    try:
        with path.open("rb") as handle:
            if path.suffix.lower() == ".parquet":
                return pq.read_table(handle, columns=columns)
            convert = csv_convert_options(layout)
            convert.include_columns = columns
            return pacsv.read_csv(handle, read_options=csv_read_options(layout), convert_options=convert)
    except Exception as error:  # the reader's own words, with the file named
        raise landing.LandingError(f"cannot read {name}: {_first_line(error)}") from error


def numbers_or_text(values: pa.Array, whole: bool) -> pa.Array:
    """A column as it is kept: float64 (int64 when ``whole`` and every value is a whole number), or its text when
    some cell holds text that is not a number."""
    if cells.text_not_numbers(values).any():
        return pc.cast(cells.decoded_array(values), pa.string())
    numbers = cells.to_float64(values)
    if whole and len(numbers) and not np.isnan(numbers).any() and np.all(numbers == np.round(numbers)):
        return pa.array(numbers.astype(np.int64))
    return pa.array(numbers)
