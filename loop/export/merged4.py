"""Merged 4-bit export (`loop export model --format merged4`): a bitsandbytes 4-bit checkpoint.

Contract:
- `check_bnb4()` runs before the store is read or a weight is touched: bitsandbytes must
  import and round-trip a probe tensor through 4-bit NF4 on the device that will quantize
  (CUDA when torch sees one, else the CPU). Where it cannot (not installed, or a build
  without 4-bit kernels for this device, as bitsandbytes before 0.46 on CPU), ExportError
  says why and what to do instead (a CUDA machine, merged16, or GGUF q4_k_m).
- `write_merged4`: the fp32 merge of base + adapter (loop.export.model.write_merged) loaded through
  transformers' bitsandbytes quantizer (NF4, double quantization, compute dtype = `dtype`)
  and saved: config.json carries the `quantization_config`, model.safetensors the packed
  4-bit weights with their quant states; embeddings, norms and the lm_head stay in `dtype`.
  `AutoModelForCausalLM.from_pretrained(DIR)` loads it as 4-bit (bitsandbytes installed).
"""

from __future__ import annotations

from pathlib import Path

from loop.export.errors import ExportError

HOW = "export --format merged16, or --format gguf --outtype q4_k_m, or run this on a CUDA machine"


def quant_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_bnb4() -> str:
    """The device bitsandbytes 4-bit runs on here, or ExportError (see the module contract)."""
    try:
        import bitsandbytes.functional as bnbf
    except Exception as e:  # ImportError, or a broken native library
        raise ExportError(
            f"--format merged4 needs bitsandbytes (pip install 'bitsandbytes>=0.46'): {type(e).__name__}: {e}; {HOW}"
        ) from None
    import torch

    device = quant_device()
    probe = torch.linspace(-1, 1, 256, device=device).reshape(4, 64)
    try:
        packed, state = bnbf.quantize_4bit(probe, quant_type="nf4")
        back = bnbf.dequantize_4bit(packed, state)
    except Exception as e:
        raise ExportError(
            f"bitsandbytes cannot run 4-bit quantization on {device}: {type(e).__name__}: {e}; {HOW}"
        ) from None
    if not torch.allclose(back.float(), probe, atol=0.2):
        raise ExportError(f"bitsandbytes 4-bit on {device} does not round-trip a probe tensor; {HOW}")
    return device


def write_merged4(merged: Path, dest: Path, dtype: str) -> dict:
    """The merged fp32 folder quantized to NF4 by bitsandbytes, saved into `dest` with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    device = check_bnb4()
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
    )
    model = AutoModelForCausalLM.from_pretrained(
        merged, quantization_config=q, dtype=getattr(torch, dtype), device_map=device
    )
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(merged).save_pretrained(dest)
    return {"dtype": dtype, "quantization": "bitsandbytes nf4, double quant", "device": device}
