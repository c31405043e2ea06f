"""Defaults shared by the CLI, the recipe schema and the library, each defined here once.

The recipe schema (`sclcoder/recipe/`) holds every training and prediction default; this module holds the
values that also appear where no recipe is loaded (CLI options, readers, the server, output folders). It
imports nothing, so `sclcoder --help` stays instant.
"""

CODE_SYSTEM = "icd10cm"
"""The code system of a note or recipe that names none."""

RUNS_DIR = "runs"
"""Where runs go: recipes put theirs under it (`train.output_dir: runs/NAME`), and the newest adapter is
searched for there."""
EVAL_DIR = f"{RUNS_DIR}/eval"
DEMO_DIR = f"{RUNS_DIR}/demo"

DEMO_CORPUS = f"{RUNS_DIR}/demo-corpus"
DEMO_CHARTS = 300
DEMO_SEED = 13
# `sclcoder demo` predicts the first notes of each test split: a corpus v5 note runs to ~4,500 tokens, and what
# fits the 10-minute budget on 2 AVX2 cores is a dozen or so (eval and the benchmarks score whole splits)
DEMO_TEST_NOTES = 8
DEMO_UNSEEN_NOTES = 4
"""The synthetic demo corpus: where it is generated, how many admissions, and the seed that fixes it."""

MAX_MODEL_LEN = 4096
"""vLLM context length when nothing else says (recipes set their own)."""

FUZZY_THRESHOLD = 90.0
"""The rapidfuzz score (0-100) above which a quote not found verbatim is placed where it best matches."""

LOOPBACK = "127.0.0.1"
"""Where local servers listen unless told otherwise (`--host`)."""
SERVE_PORT = 8000
REVIEW_PORT = 8765
"""`sclcoder review` (the coder's desk)."""
CODE_SEARCH_HITS = 20
"""Codes the review app's search lists at most."""
SERVED_MODEL_NAME = "adapter"
"""The model name `sclcoder serve` gives the adapter, and the one `predict --endpoint` asks for."""

ICD_VERSION = 10
"""ICD version read from MIMIC-IV and scored on MDACE when none is given."""
MDACE_TEST_SPLIT = "MDace-ev-test"
"""The MDACE evidence test split the published results use."""
FAITHFULNESS_PAIRS = 200
"""(note, code) pairs `eval --faithfulness` scores at most."""
