"""Stage 4, inference: the vLLM engine (in process or an OpenAI-compatible endpoint), `predict` and `serve`.
Imports train (for the adapter record), sft, data and below."""
