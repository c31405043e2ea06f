"""sclcoder: evidence-based ICD coding with span-centric learning."""

__version__ = "0.1.0"
