"""Exports out of the store: a model version (`loop export model`: LoRA, merged 16-bit, GGUF)
and a run's samples as a dataset (`loop inspect export`: jsonl, parquet, HF datasets).

`model` writes one model version with its model card and lineage; `gguf` turns a merged
folder into one .gguf file (llama.cpp's converter when found, else a built-in writer);
`samples` writes samples with their problem, rewards and provenance.
"""
