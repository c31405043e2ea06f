"""Stage 1, data: code systems, the Document model and its JSONL, readers (MDACE, MIMIC-IV, demo), the synthetic
demo corpus, windows and quote alignment. Imports only the ground floor and the run's contract."""
