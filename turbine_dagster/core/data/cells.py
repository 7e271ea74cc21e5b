"""Cells of a landing file as read: text or numbers converted to float64 by one rule in training and scoring
alike, blank and non-numeric cells found, and case ids taken from an id column or derived from a row's content."""

import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CONTENT_ID_PREFIX = "case-"
_CONTENT_ID_PERSON = b"turbine-wdbc-id1"  # blake2b personalisation: a version tag of the content-id rule
_NUMBER = r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$"


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number by the rule of ``to_float64`` ('inf' and 'nan' included)."""
    return bool(re.match(_NUMBER, text, re.IGNORECASE))


def decoded_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The values as one array, dictionary-encoded ones decoded."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.dictionary_decode() if pa.types.is_dictionary(values.type) else values


def to_float64(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The column as float64: numbers as they are, text read as a number where it is one (surrounding
    whitespace ignored; 'inf', 'nan' understood), NaN where a cell is empty or not a number. One rule for
    training and scoring, and exact: text converts to the float64 nearest its decimal value."""
    values = decoded_array(values)
    kind = values.type
    if pa.types.is_null(kind):
        return np.full(len(values), np.nan)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)  # fast path: every cell a number
    except pa.ArrowInvalid:
        numbers = pc.if_else(
            pc.match_substring_regex(text, _NUMBER, ignore_case=True), text, pa.scalar(None, pa.string())
        )
        return pc.cast(numbers, pa.float64()).to_numpy(zero_copy_only=False)


def text_not_numbers(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a cell holds text that is not a number (nor blank); never for a numeric column."""
    values = decoded_array(values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(values)
    number = pc.match_substring_regex(text, _NUMBER, ignore_case=True)
    filled = pc.greater(pc.utf8_length(text), 0)
    return pc.fill_null(pc.and_(filled, pc.invert(number)), False).to_numpy(zero_copy_only=False)


def is_blank(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a cell holds nothing: null, or text that is only whitespace."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    blank = values.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
        blank |= pc.fill_null(empty, False).to_numpy(zero_copy_only=False)
    return blank


def content_id(values: pa.Array | pa.ChunkedArray, *more: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A case id from the row's feature values (one array per feature, in FEATURE_COLUMNS order): a BLAKE2b
    hash of the 30 values as float64 (-0.0 as 0.0, every NaN alike), plus the text of any cell that is not a
    number, so that a row of junk still gets an id of its own. Never the row number: moving a row does not
    change its id, and neither does landing it as CSV instead of Parquet."""
    columns = [values, *more]
    rows = len(columns[0])
    matrix = np.empty((rows, len(columns)), dtype=np.float64)
    text_cells: dict[int, list[str]] = {}
    for index, column in enumerate(columns):
        numbers = to_float64(column)
        matrix[:, index] = numbers
        odd = text_not_numbers(column)
        if odd.any():  # text that is not a number: its words go into the hash
            texts = pc.cast(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column, pa.string())
            for row in np.flatnonzero(odd):
                text_cells.setdefault(int(row), []).append(f"{index}={texts[int(row)].as_py()}")
    matrix[matrix == 0] = 0.0  # -0.0 and 0.0 are one value
    matrix[np.isnan(matrix)] = np.nan  # one NaN bit pattern
    matrix = np.ascontiguousarray(matrix.astype("<f8"))
    ids = []
    for row in range(rows):
        digest = hashlib.blake2b(matrix[row].tobytes(), digest_size=8, person=_CONTENT_ID_PERSON)
        if row in text_cells:
            digest.update("\x1f".join(text_cells[row]).encode())
        ids.append(CONTENT_ID_PREFIX + digest.hexdigest())
    return pa.array(ids, pa.string())


def case_ids(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The ids as text, whitespace trimmed; a float id column holding whole numbers (an integer id column with a
    gap, as pandas writes it) reads as those integers, so 842302.0 is 842302 as in the CSV."""
    values = decoded_array(values)
    if pa.types.is_floating(values.type):
        numbers = values.to_numpy(zero_copy_only=False)
        finite = numbers[np.isfinite(numbers)]
        if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
            values = pc.cast(values, pa.int64())
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    return pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
