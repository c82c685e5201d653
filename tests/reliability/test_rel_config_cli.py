"""Profile parameters with wrong types or unknown names, and command-line misuse: an error that
names the key, file or flag, in one line; never a traceback."""
from __future__ import annotations

import contextlib
import dataclasses
import io as _io

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amage_core import config
from amage_core.cli import main
from amage_core.config import ConfigError, Profile, from_dict, load_profile

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SECTIONS = {"prep": config.PrepConfig, "graph": config.GraphConfig, "train": config.TrainConfig,
            "book": config.BookConfig}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                    st.text(max_size=6), st.sampled_from(["nested", "topk", "correlation", "auto", "1e-3"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=4), inner, max_size=2)),
                      max_leaves=5)


@st.composite
def sections(draw):
    """A profile fragment: known or unknown keys (some not even strings), any values."""
    name = draw(st.sampled_from(sorted(SECTIONS)))
    fields = [f.name for f in dataclasses.fields(SECTIONS[name])]
    keys = draw(st.lists(st.one_of(st.sampled_from(fields), st.text(max_size=5), st.integers(0, 3)),
                         min_size=1, max_size=3, unique_by=repr))
    return {name: {k: draw(VALUES) for k in keys}}


@SETTINGS
@given(data=sections())
def test_profile_sections_are_validated_or_refused_naming_the_key(data):
    try:
        profile = from_dict(Profile, data)
    except ConfigError as exc:
        (section, values), = data.items()
        # the message names the section and one of the keys given
        assert any(f"{section}.{k}" in str(exc) or f"{k!r}" in str(exc) for k in values) or \
            section in str(exc), str(exc)
        return
    # accepted: every value kept its declared type
    (section, values), = data.items()
    for key, value in values.items():
        got = getattr(getattr(profile, section), key)
        if isinstance(value, bool) or value is None:
            assert got == value or got is None
        elif isinstance(value, (int, float)) and not isinstance(got, bool):
            assert got == value or (value != value and got != got)


@pytest.mark.parametrize("text, match", [
    ("prep: {t1_shape: [32, 40]}", r"prep\.t1_shape: expected 3 values"),
    ("train: {epochs: ten}", r"train\.epochs: expected an integer"),
    ("train: {lr: '1e-3'}", r"train\.lr: expected a number"),
    ("train: {protocol: leaky}", r"train\.protocol: 'leaky' is not one of"),
    ("trian: {epochs: 3}", r"unknown key\(s\) \['trian'\]"),
    ("cohorts: {camcan: {source: hcp}}", r"cohorts\.camcan\.source: 'hcp' is not one of"),
    ("cohorts: {camcan: {synth: {n_subject: 3}}}", r"cohorts\.camcan\.synth: unknown key\(s\) \['n_subject'\]"),
    ("model: {gat: {heads: 2.5}}", r"model\.gat\.heads: expected an integer"),
    ("book: {chapter_parameters: {'02_data': 3}}", r"book\.chapter_parameters\.02_data: expected a mapping"),
    ("prep: {1: 2, atlas: x}", r"prep: unknown key\(s\) \[1\]"),
    ("- just\n- a list", r"expected a mapping"),
    ("prep: {atlas: [unclosed", r"not valid YAML"),
])
def test_profile_files_with_mistakes_name_the_file_and_key(tmp_path, text, match):
    path = tmp_path / "mine.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_profile(path)
    assert str(path) in str(exc.value)


def test_a_profile_that_is_not_text_names_the_file(tmp_path):
    path = tmp_path / "binary.yml"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ConfigError, match="binary.yml"):
        load_profile(path)


# --------------------------------------------------------------------------------------------
# command-line misuse
# --------------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> tuple[int, str]:
    err, out = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:                       # argparse usage errors
            code = exc.code
    return code, err.getvalue()


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "a_file.txt").write_text("x")
    (root / "empty_source").mkdir()
    (root / "empty_source" / "participants.tsv").write_text("participant_id\tage\tsex\n")
    (root / "one_source").mkdir()
    (root / "one_source" / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t30\tM\n")
    return root


CASES = [
    (["prep", "--dataset", "bids", "--out", "{d}/o"], "the following arguments are required: --root"),
    (["prep", "--root", "{d}", "--out", "{d}/o"], "the following arguments are required: --dataset"),
    (["prep", "--dataset", "hcp", "--root", "{d}", "--out", "{d}/o"], "invalid choice: 'hcp'"),
    (["prep", "--dataset", "bids", "--root", "{d}/missing", "--out", "{d}/o"], "missing: bids root folder not found"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o"], "no participants.tsv"),
    (["prep", "--dataset", "bids", "--root", "{d}/empty_source", "--out", "{d}/o"], "lists no participants"),
    (["prep", "--dataset", "bids", "--root", "{d}/one_source", "--out", "{d}/a_file.txt"], "Not a directory"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--set", "nonsense=1"], "unknown key(s) ['nonsense']"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--set", "min_volumes=abc"], "min_volumes: expected an integer"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--set", "min_volumes"], "--set 'min_volumes': expected KEY=VALUE"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--set", "t1_shape=[1,2"], "--set 't1_shape=[1,2'"),
    (["prep", "--dataset", "bids", "--root", "{d}/one_source", "--out", "{d}/o", "--modalities", "eeg"],
     "unknown ['eeg']"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--profile", "nope"], "profile 'nope' not found"),
    (["prep", "--dataset", "bids", "--root", "{d}", "--out", "{d}/o", "--n-jobs", "two"], "invalid int value: 'two'"),
    (["prep", "--dataset", "camcan", "--root", "{d}", "--out", "{d}/o"], "no Cam-CAN anat section"),
    (["prep", "--dataset", "oasis3", "--root", "{d}", "--out", "{d}/o"], "OASIS3_demographics.csv: OASIS-3 demographics not found"),
    (["train", "--data", "{d}/missing", "--model", "amagenet", "--out", "{d}/r"], "not a prepared cohort"),
    (["train", "--data", "{d}", "--model", "nope", "--out", "{d}/r"], "unknown --model 'nope'"),
    (["train", "--data", "{d}", "--model", "amagenet"], "the following arguments are required: --out"),
    (["train", "--data", "{d}", "--model", "amagenet", "--out", "{d}/r", "--folds", "x"], "invalid int value: 'x'"),
    (["book", "--profile", "nope", "--no-html"], "profile 'nope' not found"),
    (["book", "--chapters", "99", "--no-html"], "no chapter matches ['99']"),
    (["synth", "--out", "{d}/s", "--nonsense"], "unrecognized arguments: --nonsense"),
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_command_line_misuse_is_one_clear_line(places, argv, message):
    code, err = run_cli([a.format(d=places) for a in argv])
    assert code == 2, err
    assert "Traceback" not in err
    assert message in err, err
    assert err.strip().splitlines()[-1].startswith("amage"), err


@pytest.mark.parametrize("folds, message", [(1, "at least 2 folds"), (100, "100-fold cross-validation needs at least 100")])
def test_impossible_fold_counts_are_explained(prepared_ref, tmp_path, folds, message):
    code, err = run_cli(["train", "--data", str(prepared_ref), "--model", "ridge-fc", "--out", str(tmp_path / "r"),
                         "--folds", str(folds), "--quiet"])
    assert code == 2 and message in err, err
