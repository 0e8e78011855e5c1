"""The hf backend on the real embedded model: groups, seeds, stop strings, budget forcing."""
import pytest

from tests import sampler_checks as checks


@pytest.fixture(scope="module")
def hf():
    from loop.config import load_config
    from loop.models import resolve_model
    from loop.samplers.hf import HFSampler
    cfg = load_config(None, ["sample.batch_size=8"])
    s = HFSampler(resolve_model(cfg.model.name), None, cfg.sample, cfg.model)
    yield s
    s.close()


@pytest.fixture(scope="module")
def base(hf):
    return checks.greedy(hf)


@pytest.mark.slow
def test_group_size_and_seeds(hf):
    checks.check_groups_and_seeds(hf)


@pytest.mark.slow
def test_stop_strings(hf, base):
    checks.check_stop_strings(hf, base)


@pytest.mark.slow
def test_thinking_budget_cap(hf):
    checks.check_budget_cap(hf)


@pytest.mark.slow
def test_wait_extension(hf, base):
    checks.check_waits(hf, base)


def test_unloadable_model_is_a_clear_error(tmp_path):
    from loop.config import load_config
    from loop.models import ModelError
    from loop.samplers.hf import HFSampler
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    cfg = load_config(None, [])
    with pytest.raises(ModelError, match=str(tmp_path)):
        HFSampler(tmp_path, None, cfg.sample, cfg.model)
