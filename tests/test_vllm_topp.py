"""The sort-free top-p (loop/samplers/vllm_topp.py) keeps exactly the tokens vLLM's own
sorting implementation keeps, on rows of every shape of distribution."""
import pytest

pytest.importorskip("vllm")


def _rows(vocab=4096, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(6, vocab, generator=g)
    return torch.stack([
        base[0] * 8.0,                       # peaked: nucleus of a few tokens
        base[1] * 2.0,                       # medium
        base[2] * 0.05,                      # nearly flat: nucleus far beyond the first 64 (fallback)
        torch.where(torch.arange(vocab) < 3, 20.0, -20.0) + base[3] * 0.01,  # 3 tied leaders
        base[4] * 4.0,
        base[5] * 1.0,
    ])


CASES = [  # (p per row, k per row or None)
    ([0.95] * 6, None),                       # the default config's top-p
    ([0.5, 0.9, 0.99, 0.95, 0.7, 0.3], None),  # mixed p in one batch
    ([1.0] * 6, None),                        # p = 1: every row falls back to vLLM's sort
    ([0.9] * 6, [5, 40, 64, 2, 1, 10]),       # top-k then top-p, k within the fast path
    ([0.9] * 6, [5, 40, 200, 2, 1, 10]),      # a k beyond the fast path: vLLM's own path
]


@pytest.mark.parametrize("ps,ks", CASES)
def test_same_kept_set_as_vllm(ps, ks):
    import torch
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    from loop.samplers import vllm_topp
    vllm_topp.install()
    orig = vllm_topp._original
    assert mod.apply_top_k_top_p is vllm_topp.top_k_top_p and orig is not vllm_topp.top_k_top_p
    for seed in range(3):
        logits = _rows(seed=seed)
        p = torch.tensor(ps)
        k = torch.tensor(ks) if ks else None
        want = orig(logits.clone(), None if k is None else k.clone(), p.clone())
        got = vllm_topp.top_k_top_p(logits.clone(), k, p)
        assert torch.equal(torch.isinf(want), torch.isinf(got)), f"kept sets differ (seed {seed})"
        kept = ~torch.isinf(got)
        assert torch.equal(got[kept], logits[kept])   # kept logits are untouched
        assert kept.sum(1).min() >= 1


def test_off_switch(monkeypatch):
    from loop.samplers import vllm_topp
    monkeypatch.setenv("LOOP_VLLM_FAST_TOPP", "0")
    assert vllm_topp.install() is False
