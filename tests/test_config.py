import pytest

from amage_core.config import (
    ConfigError, DenseNetConfig, ModelConfig, Profile, as_profile, from_dict, load_profile, replace, to_dict,
)


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_shipped_profiles_load_and_round_trip(name):
    prof = load_profile(name)
    assert prof.name == name
    assert "camcan" in prof.cohorts
    assert from_dict(Profile, to_dict(prof)) == prof


def test_paper_profile_uses_the_authors_training_settings():
    t = load_profile("paper").train
    assert (t.lr, t.batch_size, t.epochs, t.folds) == (1e-4, 8, 50, 5)
    assert t.weight_decay == 0.01 and t.warmup_fraction == 0.1   # the recipe's defaults


def test_unknown_key_is_an_error_naming_it(tmp_path):
    p = tmp_path / "p.yml"
    p.write_text("name: x\ntrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"train.*epochz"):
        load_profile(p)


@pytest.mark.parametrize("section, value", [
    ("train:\n  epochs: three", "epochs"),
    ("train:\n  epochs: true", "epochs"),
    ("train:\n  protocol: leaky", "protocol"),
    ("prep:\n  t1_shape: [32, 32]", "t1_shape"),
])
def test_wrong_types_are_errors(tmp_path, section, value):
    p = tmp_path / "p.yml"
    p.write_text(f"name: x\n{section}\n")
    with pytest.raises(ConfigError, match=value):
        load_profile(p)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="demo"):
        load_profile("no-such-profile")


def test_as_profile_takes_a_profile_or_its_name():
    prof = load_profile("demo")
    assert as_profile(prof) is prof
    assert as_profile("demo") == prof
    with pytest.raises(ConfigError, match="demo"):
        as_profile("no-such-profile")


def test_replace_merges_nested_sections():
    cfg = ModelConfig()
    new = replace(cfg, variant="smri", densenet={"growth_rate": 4})
    assert new.variant == "smri" and new.densenet.growth_rate == 4
    assert new.densenet.init_features == DenseNetConfig().init_features
    assert cfg.variant == "amagenet"  # the original is untouched
