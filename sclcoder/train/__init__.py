"""Stage 3, training: the TRL + PEFT trainer (`trainer.py`, read it top to bottom), the `--dry-run` plan and the
progress callbacks. Imports sft, data and below."""
