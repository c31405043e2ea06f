"""Defaults shared by the CLI, the recipe schema and the library, each defined here once.

The recipe schema (`sclcoder/recipe/schema.py`) holds every training and prediction default; this module holds the few
values that also appear where no recipe is loaded (CLI options, readers, the engine). It imports nothing,
so `sclcoder --help` stays instant.
"""

CODE_SYSTEM = "icd10cm"
"""The code system of a note or recipe that names none."""

DEMO_CORPUS = "runs/demo-corpus"
DEMO_CHARTS = 300
DEMO_SEED = 13
# `sclcoder demo` predicts the first 30 of the 45 `test` notes and all 15 `test-unseen` ones: 45 notes, what
# fits the 10-minute budget on 2 AVX2 cores (eval and the benchmarks score whole splits)
DEMO_TEST_NOTES = 30
"""The synthetic demo corpus: where it is generated, how many admissions, and the seed that fixes it."""

MAX_MODEL_LEN = 4096
"""vLLM context length when nothing else says (recipes set their own)."""

MDACE_TEST_SPLIT = "MDace-ev-test"
"""The MDACE evidence test split the published results use."""
