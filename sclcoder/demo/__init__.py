"""The demo: a synthetic corpus generated from scratch (`corpus`, from the conditions table through sampled
admissions to written charts) and the embedded default run end to end (`run`). It may use every stage; no
stage imports it."""
