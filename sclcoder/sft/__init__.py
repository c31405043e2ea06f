"""Stage 2, SFT data: versioned prompts and their renderer, the answer schema, span/negative/document/synthetic
examples, the teacher LLM client and `data build`. Imports data and below."""
