"""Q6: the VGG-11 table against the published count and torchvision, and its checks against wrong formulas."""
import pytest

from derivations import q6_vgg11 as q6

PUBLISHED_VGG11_PARAMS = 132_863_336      # VGG-11 ("A"), 1000 classes, with biases; torchvision's vgg11 has the same
CFG = q6.PROFILES["full"]


def no_bias(cfg):
    """The table with every '+1' (bias) dropped."""
    rows = q6.vgg11_table(cfg)
    out = []
    for r in rows:
        n_out = r["shape"][-1]
        out.append({**r, "params": r["params"] - n_out if r["params"] else 0})
    return out


def times_1_01(cfg):
    return [{**r, "params": round(1.01 * r["params"])} for r in q6.vgg11_table(cfg)]


def conv_5x5(cfg):
    return q6.vgg11_table({**cfg, "kernel": 5})


@pytest.fixture(scope="module")
def torchvision_vgg11():
    return q6.torchvision_rows()


def test_q6_total_is_the_published_count():
    assert sum(r["params"] for r in q6.vgg11_table(CFG)) == PUBLISHED_VGG11_PARAMS


def test_q6_torchvision_has_the_published_count(torchvision_vgg11):
    _, total = torchvision_vgg11
    assert total == PUBLISHED_VGG11_PARAMS


def test_q6_checks_pass(torchvision_vgg11):
    measured, total = torchvision_vgg11
    assert q6.check_rows(CFG, measured)["passed"]
    assert q6.check_total(CFG, total)["passed"]


@pytest.mark.parametrize("wrong", [no_bias, times_1_01, conv_5x5], ids=["no-bias", "x1.01", "5x5-kernels"])
def test_q6_rows_and_total_mutation(torchvision_vgg11, wrong):
    measured, total = torchvision_vgg11
    assert not q6.check_rows(CFG, measured, table=wrong)["passed"]
    assert not q6.check_total(CFG, total, table=wrong)["passed"]


def test_q6_committed_result_is_the_published_count(root):
    import json
    m = json.loads((root / "results" / "q6_vgg11.json").read_text())["metrics"]
    assert m["total_params"] == PUBLISHED_VGG11_PARAMS and m["all_checks_passed"] is True
