"""A CPU fallback for TRL 1.15's fused LM head.

TRL 1.15's SFTTrainer always routes the loss through `ChunkedLogProbFunction`, a
Triton kernel; the CPU build of torch ships no Triton, so TRL leaves it None and
training fails with "'NoneType' object has no attribute 'apply'". `install()`
substitutes a pure-torch function with the same call signature and outputs
(log-probs with gradient; entropy, log-sum of squared probs, mean logits and
top-1 flags for metrics only). It changes nothing where Triton is present.
"""

from __future__ import annotations


class TorchChunkedLogProb:
    """Drop-in for trl.kernels.ChunkedLogProbFunction (same `.apply` arguments and results)."""

    @staticmethod
    def apply(
        hidden,
        weight,
        bias,
        targets,
        temperature,
        chunk_size,
        softcap=None,
        logit_scale=1.0,
        outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1"),
    ):
        import torch

        z = hidden.float() @ weight.float().t()
        if bias is not None:
            z = z + bias.float()
        z = z * logit_scale
        if softcap:
            z = softcap * torch.tanh(z / softcap)
        z = z / temperature
        log_z = torch.logsumexp(z, dim=-1)
        target = z.gather(-1, targets[:, None]).squeeze(-1)
        logprobs = target - log_z
        entropy = log_sum_sq = mean_logits = is_top1 = None
        with torch.no_grad():  # metrics only: TRL logs them, the loss uses log-probs
            zd, lzd = z.detach(), log_z.detach()
            p = (zd - lzd[:, None]).exp()
            if "entropy" in outputs:
                entropy = lzd - (p * zd).sum(-1)
            if "log_sum_sq_probs" in outputs:
                log_sum_sq = torch.log((p * p).sum(-1))
            if "mean_logits" in outputs:
                mean_logits = zd.mean(-1)
            if "is_top1" in outputs:
                is_top1 = target.detach() >= zd.max(-1).values
        return logprobs, entropy, log_sum_sq, mean_logits, is_top1


def install() -> bool:
    """Patch TRL where its Triton kernel is missing; True when the fallback is active."""
    import trl.trainer.utils as tu

    if getattr(tu, "_ChunkedLogProbFunction", None) is None:
        tu._ChunkedLogProbFunction = TorchChunkedLogProb  # type: ignore[misc,assignment]  # monkeypatch: same .apply
        return True
    return False
