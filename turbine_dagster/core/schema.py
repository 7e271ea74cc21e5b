"""Column names and label coding shared by every module that touches case data.

The labels follow ``sklearn.datasets.load_breast_cancer``: **malignant is class 0**, benign is 1.
Every "malignant" metric in this project treats class 0 as the positive class.
"""

from sklearn.datasets import load_breast_cancer

CASE_ID = "case_id"
TARGET = "target"
SOURCE_FILE = "source_file"
P_MALIGNANT = "p_malignant"
"""A model's probability that the case is malignant, in every table of scores."""

MALIGNANT = 0
BENIGN = 1
CLASS_NAMES = ("malignant", "benign")  # index == class code

FEATURE_COLUMNS: tuple[str, ...] = tuple(str(name) for name in load_breast_cancer().feature_names)
