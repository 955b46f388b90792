"""Spec mistakes reach the user as one line naming the file and the field; YAML is read as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from abm_ml.data.spec import expand_env, load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.schema import LOST, OUTCOME, WON

DATA = "id,stage,amount,region\n1,Won,5,East\n2,Lost,6,West\n3,Lost,7,East\n"
SPEC = """\
name: case
source: {path: data.csv}
row_id: id
label: {column: stage, won: Won, lost: Lost}
"""


def _write_case(
    folder: Path, spec: str, data: str | None = DATA, data_name: str = "data.csv"
) -> Path:
    if data is not None:
        (folder / data_name).write_text(data)
    path = folder / "spec.yaml"
    path.write_text(spec)
    return path


def _error(path: Path) -> str:
    """Load spec and data; return the one-line error message."""
    with pytest.raises(AbmInputError) as caught:
        load_dataset(load_spec(path))
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_good_spec_loads(tmp_path):
    dataset = load_dataset(load_spec(_write_case(tmp_path, SPEC + "features: [region]\n")))
    assert dataset.summary.accepted == 3


def test_missing_column_suggests_the_closest(tmp_path):
    message = _error(_write_case(tmp_path, SPEC + "features: [amout]\n"))
    assert message.startswith(str(tmp_path / "data.csv"))
    assert (
        "column 'amout' (the spec's `features`) is not in the file; did you mean 'amount'?"
        in message
    )


def test_missing_label_column_names_the_field(tmp_path):
    message = _error(_write_case(tmp_path, SPEC.replace("column: stage", "column: Stage")))
    assert "data.csv" in message and "`label`" in message and "did you mean 'stage'?" in message


def test_missing_column_without_a_close_match(tmp_path):
    message = _error(_write_case(tmp_path, SPEC + "amount: zzz_total\n"))
    assert "column 'zzz_total' (the spec's `amount`) is not in the file" in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("featurez: [amount]\n", "`featurez`"),
        ("features: [{column: amount, name: amt, typ: numeric}]\n", "`features.0.typ`"),
    ],
)
def test_unknown_key(tmp_path, extra, field):
    path = _write_case(tmp_path, SPEC + extra)
    message = _error(path)
    assert message.startswith(str(path))
    assert f"field {field}: unknown key" in message


def test_unknown_feature_type(tmp_path):
    path = _write_case(tmp_path, SPEC + "features: [{column: amount, name: amt, type: money}]\n")
    message = _error(path)
    assert str(path) in message and "`features.0.type`" in message and "'numeric'" in message


def test_label_with_one_class_in_the_data(tmp_path):
    message = _error(_write_case(tmp_path, SPEC, data="id,stage\n1,Won\n2,Won\n3,Open\n"))
    assert message.startswith(str(tmp_path / "data.csv"))
    assert "label 'stage'" in message and "one class" in message and "(2 won, 0 lost)" in message


def test_label_with_one_class_in_the_spec(tmp_path):
    path = _write_case(tmp_path, SPEC.replace(", lost: Lost", ""))
    message = _error(path)
    assert str(path) in message and "field `label`" in message and "`lost`" in message


def test_label_value_both_won_and_lost(tmp_path):
    message = _error(_write_case(tmp_path, SPEC.replace("lost: Lost", "lost: [Lost, Won]")))
    assert "field `label`" in message and "both won and lost" in message


def test_empty_file(tmp_path):
    message = _error(_write_case(tmp_path, SPEC, data=""))
    assert message == f"{tmp_path / 'data.csv'}: the file is empty"


def test_whitespace_only_file_is_empty(tmp_path):
    message = _error(_write_case(tmp_path, SPEC, data="\r\n  \n"))
    assert message == f"{tmp_path / 'data.csv'}: the file is empty"


def test_header_only_file(tmp_path):
    message = _error(_write_case(tmp_path, SPEC, data="id,stage,amount\r\n"))
    assert message == f"{tmp_path / 'data.csv'}: the file has a header but no rows"


def test_data_file_that_is_not_there(tmp_path):
    message = _error(_write_case(tmp_path, SPEC, data=None))
    assert message == f"{tmp_path / 'data.csv'}: file not found"


def test_spec_file_that_is_not_there(tmp_path):
    message = _error(tmp_path / "nope.yaml")
    assert message == f"{tmp_path / 'nope.yaml'}: spec file not found"


def test_invalid_yaml_names_the_line(tmp_path):
    path = _write_case(tmp_path, SPEC + "features: [amount\n")
    message = _error(path)
    assert message.startswith(f"{path}: line 6: not valid YAML")


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = _write_case(tmp_path, "- name\n- source\n")
    assert _error(path) == f"{path}: a spec must be a YAML mapping"


def test_missing_required_field(tmp_path):
    path = _write_case(tmp_path, SPEC.replace("name: case\n", ""))
    assert "field `name`: Field required" in _error(path)


def test_join_key_missing_from_the_main_source(tmp_path):
    (tmp_path / "other.csv").write_text("acct,tier\n1,gold\n")
    path = _write_case(
        tmp_path,
        SPEC.replace(
            "source: {path: data.csv}",
            "source: {path: data.csv, join: [{path: other.csv, on: acct}]}",
        ),
    )
    message = _error(path)
    assert (
        str(tmp_path / "data.csv") in message and "source.join" in message and "'acct'" in message
    )


def test_join_key_missing_from_the_joined_file(tmp_path):
    (tmp_path / "other.csv").write_text("account,tier\n1,gold\n")
    path = _write_case(
        tmp_path,
        SPEC.replace(
            "source: {path: data.csv}",
            "source: {path: data.csv, join: [{path: other.csv, on: id}]}",
        ),
    )
    message = _error(path)
    assert (
        message.startswith(str(tmp_path / "other.csv"))
        and "column 'id' (the spec's `source.join.on`)" in message
    )


def test_yaml_on_and_no_stay_strings(tmp_path):
    (tmp_path / "calls.csv").write_text("id,outcome\n1,yes\n2,no\n3,no\n")
    (tmp_path / "extra.csv").write_text("id,on,off\n1,a,b\n2,c,d\n3,e,f\n")
    spec = """\
name: calls
source:
  path: calls.csv
  join:
    - path: extra.csv
      on: id
row_id: id
label:
  column: outcome
  won: yes
  lost: no
features: [on, off]
"""
    loaded = load_spec(_write_case(tmp_path, spec, data=None))
    assert loaded.source.join[0].on == "id"
    assert loaded.label.won == ["yes"] and loaded.label.lost == ["no"]
    assert [f.column for f in loaded.features] == ["on", "off"]
    dataset = load_dataset(loaded)
    assert list(dataset.frame[OUTCOME]) == [WON, LOST, LOST]
    assert list(dataset.frame["on"]) == ["a", "c", "e"]


def test_yaml_true_and_false_are_still_booleans(tmp_path):
    spec = SPEC.replace(
        "label: {column: stage, won: Won, lost: Lost}",
        "label: {column: stage, present_means_won: true}",
    )
    loaded = load_spec(_write_case(tmp_path, spec + "infer_remaining_features: false\n"))
    assert loaded.label.present_means_won is True
    assert loaded.infer_remaining_features is False


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("ABM_TEST_DIR", "/data/crm")
    monkeypatch.delenv("ABM_TEST_UNSET", raising=False)
    monkeypatch.setenv("ABM_TEST_EMPTY", "")
    assert expand_env("${ABM_TEST_DIR}/a.csv") == "/data/crm/a.csv"
    assert expand_env("${ABM_TEST_DIR:-/elsewhere}/a.csv") == "/data/crm/a.csv"
    assert expand_env("${ABM_TEST_UNSET:-../shared}/a.csv") == "../shared/a.csv"
    assert expand_env("${ABM_TEST_EMPTY:-fallback}") == "fallback"
    assert expand_env("$ABM_TEST_DIR and ${not valid}") == "$ABM_TEST_DIR and ${not valid}"


def test_paths_are_relative_to_the_spec_and_expand_variables(tmp_path, monkeypatch):
    project = tmp_path / "project" / "specs"
    project.mkdir(parents=True)
    data = tmp_path / "shared" / "crm"
    data.mkdir(parents=True)
    (data / "deals.csv").write_text(DATA)
    (data / "regions.csv").write_text("region,zone\nEast,A\nWest,B\n")
    spec = SPEC.replace(
        "source: {path: data.csv}",
        "source:\n  path: ${ABM_TEST_SHARED:-../../shared}/crm/deals.csv\n"
        "  join: [{path: ../../shared/crm/regions.csv, on: region}]",
    )
    path = _write_case(project, spec, data=None)
    monkeypatch.chdir(tmp_path.parent)  # somewhere else entirely
    monkeypatch.delenv("ABM_TEST_SHARED", raising=False)
    loaded = load_spec(path)
    assert loaded.source.path == str(data / "deals.csv")
    assert loaded.source.join[0].path == str(data / "regions.csv")
    assert loaded.spec_path == str(path)
    assert load_dataset(loaded).summary.accepted == 3

    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    monkeypatch.setenv("ABM_TEST_SHARED", str(elsewhere))
    assert load_spec(path).source.path == str(elsewhere / "crm" / "deals.csv")


def test_sqlite_url_is_relative_to_the_spec(tmp_path):
    spec = SPEC.replace(
        "source: {path: data.csv}", "source: {url: 'sqlite:///crm.db', table: deals}"
    )
    loaded = load_spec(_write_case(tmp_path, spec, data=None))
    assert loaded.source.url == f"sqlite:///{tmp_path / 'crm.db'}"
    absolute = SPEC.replace(
        "source: {path: data.csv}", "source: {url: 'sqlite:////var/crm.db', table: deals}"
    )
    assert (
        load_spec(_write_case(tmp_path, absolute, data=None)).source.url == "sqlite:////var/crm.db"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{path: data.csv, url: 'sqlite:///x.db', table: t}", "exactly one of `path`"),
        ("{url: 'sqlite:///x.db'}", "exactly one of `table` or `query`"),
        ("{path: data.csv, join: [{path: other.csv}]}", "`on` or both `left_on` and `right_on`"),
    ],
)
def test_source_rules(tmp_path, source, message):
    path = _write_case(tmp_path, SPEC.replace("{path: data.csv}", source))
    error = _error(path)
    assert str(path) in error and "field `source" in error and message in error


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("features: [amount]\n", "clash with reserved column names"),
        ("features: [region, {column: amount, name: region}]\n", "used more than once"),
        ("features: [{column: amount, name: 'deal size'}]\n", "letters, digits and underscores"),
        ("features: [region]\nexclude: [region]\n", "both features and excluded"),
        ("closed_at: stage\n", "`closed_at` needs `created_at`"),
    ],
)
def test_spec_consistency_rules(tmp_path, extra, message):
    path = _write_case(tmp_path, SPEC + extra)
    error = _error(path)
    assert str(path) in error and message in error


def test_reserved_name_error_lists_every_reserved_name(tmp_path):
    from abm_ml.schema import CANONICAL_COLUMNS

    error = _error(_write_case(tmp_path, SPEC + "features: [{column: Outcome}]\n"))
    assert "['outcome'] clash with reserved column names" in error
    assert all(name in error for name in CANONICAL_COLUMNS)
    assert "docs/spec.md" in error


def test_duplicates_and_leakage_keys_are_checked(tmp_path):
    assert "field `duplicates`" in _error(_write_case(tmp_path, SPEC + "duplicates: remove\n"))
    assert "field `leakage.missingness`" in _error(
        _write_case(tmp_path, SPEC + "leakage: {missingness: ignore}\n")
    )
    spec = load_spec(
        _write_case(
            tmp_path,
            SPEC
            + "duplicates: drop\nleakage: {missingness_auc_threshold: 0.8, missingness: flag}\n",
        )
    )
    assert spec.duplicates == "drop"
    assert (spec.leakage.missingness_auc_threshold, spec.leakage.missingness) == (0.8, "flag")


def test_docs_spec_md_documents_every_key_and_the_guard_defaults():
    from abm_ml.data import spec as spec_module
    from abm_ml.schema import CANONICAL_COLUMNS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    models = [
        spec_module.DatasetSpec,
        spec_module.SourceSpec,
        spec_module.JoinSpec,
        spec_module.LabelSpec,
        spec_module.DateSpec,
        spec_module.DurationSpec,
        spec_module.AmountSpec,
        spec_module.FeatureSpec,
        spec_module.ExcludeSpec,
        spec_module.LeakageSpec,
        spec_module.SplitSpec,
    ]
    undocumented = {
        f"{model.__name__}.{key}"
        for model in models
        for key in model.model_fields
        if key != "spec_path" and f"`{key}`" not in doc
    }
    assert not undocumented
    for name in CANONICAL_COLUMNS:
        assert f"`{name}`" in doc
    defaults = spec_module.LeakageSpec()
    for key in ("auc_threshold", "missingness_auc_threshold", "suspicious_auc_threshold"):
        assert f"| `{key}` | 0.5–1 | `{getattr(defaults, key):.2f}` |" in doc, key
