import pytest

from amage_core import io
from amage_core import workflow as wf
from amage_core.config import (
    RUNTIME_SECTIONS, ConfigError, DenseNetConfig, ModelConfig, PrepConfig, Profile, TrainConfig, as_profile,
    baseline_settings, from_dict, load_profile, profile_from_dict, read_yaml, replace, result_settings,
    runtime_fields, runtime_settings, to_dict,
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
    ("train:\n  blend_folds: 6", r"blend_folds: must be in 1\.\.5 with blend_fraction 0\.2 \(got 6\)"),
    ("train:\n  blend_folds: 0", r"blend_folds: must be in 1\.\.5"),
    ("train:\n  val_part: 1", r"val_part: must be in 0\.\.0 with val_fraction 0\.0"),
    ("train:\n  val_fraction: 0.3\n  val_part: 3", r"val_part: must be in 0\.\.2 with val_fraction 0\.3 \(got 3\)"),
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


# --- the runtime section: settings that change no result -----------------------------------------------
RUNTIME = {"device": "cpu", "num_workers": 2, "fold_workers": 3, "cpu_threads": 1, "n_jobs": 4, "strict": True}


def _write(tmp_path, text):
    p = tmp_path / "p.yml"
    p.write_text(text)
    return p


def test_runtime_section_sets_the_runtime_fields_of_train_and_prep(tmp_path):
    prof = load_profile(_write(tmp_path, "name: x\nruntime: " + repr(RUNTIME).replace("True", "true") + "\n"))
    assert (prof.train.device, prof.train.num_workers, prof.train.fold_workers, prof.train.cpu_threads) == \
        ("cpu", 2, 3, 1)
    assert (prof.prep.n_jobs, prof.prep.strict) == (4, True)
    assert set(runtime_fields(TrainConfig)) | set(runtime_fields(PrepConfig)) == set(RUNTIME)
    assert not set(runtime_fields(TrainConfig)) & set(runtime_fields(PrepConfig))   # one section each
    assert set(RUNTIME_SECTIONS) == {"train", "prep"}


@pytest.mark.parametrize("name, train, prep", [
    ("demo", {"fold_workers": 2, "cpu_threads": 1}, {"n_jobs": 2}),
    ("paper", {"fold_workers": 1, "cpu_threads": 0}, {"n_jobs": 8}),
    ("gpu", {"fold_workers": 1, "cpu_threads": 0}, {"n_jobs": 2}),
])
def test_shipped_profiles_keep_their_runtime_values_in_the_runtime_section(name, train, prep):
    prof = load_profile(name)
    assert {k: getattr(prof.train, k) for k in train} == train
    assert {k: getattr(prof.prep, k) for k in prep} == prep
    raw = read_yaml((wf.REPO_ROOT / "amage_core" / "profiles" / f"{name}.yml").read_text())
    assert raw["runtime"]
    assert not set(RUNTIME) & (set(raw.get("train") or {}) | set(raw.get("prep") or {}))   # none left there


def test_a_runtime_setting_changes_no_result_settings_and_no_fit_fingerprint():
    from amage_core.train.loop import fit_fingerprint

    train, prep = TrainConfig(), PrepConfig()
    train2 = replace(train, device="cuda", num_workers=4, fold_workers=2, cpu_threads=3, seeds=5)
    prep2 = replace(prep, n_jobs=-1, strict=True)
    assert result_settings(train2) == result_settings(train)
    assert fit_fingerprint(train2) == fit_fingerprint(train)
    assert result_settings(prep2) == result_settings(prep)
    assert result_settings(replace(train, epochs=3)) != result_settings(train)
    # the same keys as the hand-kept lists before (run identities, checkpoints and cohorts keep their hashes)
    old_train = ("device", "num_workers", "fold_workers", "cpu_threads", "seeds")
    assert result_settings(train) == {k: v for k, v in to_dict(train).items() if k not in old_train}
    assert result_settings(prep) == {k: v for k, v in to_dict(prep).items() if k not in ("n_jobs", "strict")}
    assert runtime_settings(train2) == {"seeds": 5, "device": "cuda", "num_workers": 4, "fold_workers": 2,
                                        "cpu_threads": 3}
    # nested: a whole profile's settings leave every runtime field out
    assert result_settings(load_profile("demo")) == result_settings(
        load_profile("demo", overrides={"runtime": {"fold_workers": 1, "n_jobs": 1}}))


def test_baseline_settings_are_the_training_settings_a_baseline_reads():
    cfg = TrainConfig()
    assert set(baseline_settings(cfg)) == {"folds", "train_fraction", "seed", "protocol", "age_bins", "bias_method"}
    assert baseline_settings(replace(cfg, epochs=3, lr=0.1, fold_workers=2)) == baseline_settings(cfg)


def test_cached_products_are_named_by_their_result_settings_only(tmp_path, monkeypatch):
    """The prepared cohort's folder and a run's folder stay the same when a runtime setting changes
    and move when a result setting does."""
    from amage_core import baselines
    from amage_core.data import prepare
    from amage_core.train import cv

    class Cohort:                   # what run() reads of a prepared cohort: its manifest
        def __init__(self, out):
            self.out, self.manifest = out, {"config_hash": out.name}

    monkeypatch.setattr(prepare, "prepare_cohort", lambda source, root, out, cfg, **kw: Cohort(out))
    monkeypatch.setattr(cv, "cross_validate", lambda cohort, model_cfg, train_cfg, graph_cfg, out, **kw: out)
    monkeypatch.setattr(baselines, "run_baseline", lambda name, cohort, train_cfg, out, **kw: out)
    spec = {"name": "x", "workdir": str(tmp_path / "work"),
            "cohorts": {"c": {"source": "bids", "root": str(tmp_path / "bids")}}}

    def folders(**sections):
        prof = profile_from_dict({**spec, **sections})
        return wf.prepared(prof, "c", progress=False).out, wf.run(prof, "c", "fmri", progress=False)

    base = folders()
    work = (tmp_path / "work").resolve()
    assert base[0].parent == work / "prepared" and base[0].name.startswith("c-")
    assert base[1].parent == work / "runs" and base[1].name.startswith("c-fmri-")
    assert folders(runtime=RUNTIME) == base
    assert folders(train={"seeds": 3}) == base
    assert folders(prep={"min_volumes": 50})[0] != base[0]
    assert folders(train={"epochs": 3})[1] != base[1]
    table = wf.product_path(profile_from_dict(spec), "diagnostics", "lr-range-c-fmri", {"k": 1}, ".tsv")
    assert table == work / "diagnostics" / f"lr-range-c-fmri-{io.stable_hash({'k': 1})}.tsv"
    # a run's folder moves only with the settings its model reads: a DenseNet's not with the GAT,
    # the graph, the FC standardisation or the fusion stage; a baseline's not with deep settings
    gat, graph = {"model": {"gat": {"dropout": 0.0}}}, {"graph": {"topk": 20}}
    fusion, fc = {"train": {"blend_fraction": 0.4, "encoded_views": 2}}, {"train": {"standardize_fc": True}}
    t1 = {"train": {"augment": True}}

    def run_folder(variant, sections=None):
        return wf.run(profile_from_dict({**spec, **(sections or {})}), "c", variant, progress=False)

    for model, unread, read in [("smri", [gat, graph, fusion, fc], [t1, {"model": {"densenet": {"growth_rate": 4}}}]),
                                ("fmri", [fusion, t1, {"model": {"densenet": {"growth_rate": 4}}}], [gat, graph, fc]),
                                ("amagenet", [], [gat, graph, fusion, fc, t1]),
                                ("ridge-fc", [gat, graph, fusion, fc, t1, {"train": {"epochs": 3}}], [{"train": {"folds": 3}}])]:
        folder = run_folder(model)
        assert all(run_folder(model, s) == folder for s in unread), model
        assert all(run_folder(model, s) != folder for s in read), model


@pytest.mark.parametrize("text, message", [
    ("runtime: {epochs: 3}", r"runtime\.epochs: not a runtime setting.*under train:"),
    ("runtime: {seeds: 3}", r"runtime\.seeds: not a runtime setting.*under train:"),
    ("runtime: {atlas: cc200}", r"runtime\.atlas: not a runtime setting.*under prep:"),
    ("runtime: {gpus: 2}", r"runtime: unknown key\(s\) \['gpus'\]; allowed: .*fold_workers"),
    ("runtime: {fold_workers: two}", r"runtime\.fold_workers: expected an integer"),
    ("runtime: {fold_workers: 0}", r"runtime\.fold_workers: must be at least 1"),
    ("runtime: {strict: 1}", r"runtime\.strict: expected true/false"),
    ("runtime: [fold_workers]", r"runtime: expected a mapping"),
    ("runtime: {fold_workers: 2}\ntrain: {fold_workers: 3}", r"\['fold_workers'\] given under both runtime: and train:"),
    ("runtime: {n_jobs: 2}\nprep: {n_jobs: 2}", r"\['n_jobs'\] given under both runtime: and prep:"),
])
def test_a_misplaced_or_unknown_runtime_key_is_an_error_naming_it(tmp_path, text, message):
    p = _write(tmp_path, f"name: x\n{text}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_profile(p)
    assert str(p) in str(err.value)


def test_profiles_written_before_the_runtime_section_still_load(tmp_path):
    prof = load_profile(_write(tmp_path, "name: x\ntrain: {fold_workers: 2, cpu_threads: 1}\nprep: {n_jobs: 3}\n"))
    assert (prof.train.fold_workers, prof.train.cpu_threads, prof.prep.n_jobs) == (2, 1, 3)


def test_overrides_may_use_the_runtime_section_and_win_over_the_file(tmp_path):
    p = _write(tmp_path, "name: x\nruntime: {fold_workers: 2, n_jobs: 2}\n")
    prof = load_profile(p, overrides={"runtime": {"fold_workers": 1}, "train": {"epochs": 3}})
    assert (prof.train.fold_workers, prof.prep.n_jobs, prof.train.epochs) == (1, 2, 3)
    assert load_profile(p, overrides={"train": {"fold_workers": 4}}).train.fold_workers == 4
