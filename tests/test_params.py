"""Parameter validation: messages name the key, the file and what is allowed; exit code 2."""
from __future__ import annotations

import pytest
import yaml

from cvlib import ParamError, load_study
from cvlib.cli import main
from cvlib.params import apply_overrides, parse_override
from tests.conftest import ROOT, write_study

ROWS = [{"customer": "001", "date": "2024-01-05", "amount": "10.00"}]


def test_example_params_are_valid():
    study = load_study(ROOT / "params" / "cdnow.yaml")
    assert study.study == "cdnow"
    assert study.resolve(study.inputs.transactions.path).is_file()


def test_unknown_key_suggests_nearest(tmp_path):
    p = write_study(tmp_path, ROWS, extra={"cleaning": {"outlier": {"method": "iqr"}}})
    with pytest.raises(ParamError) as e:
        load_study(p)
    msg = str(e.value)
    assert "cleaning.outlier" in msg and "Did you mean 'outliers'" in msg and str(p) in msg


def test_wrong_literal_value_lists_allowed(tmp_path):
    p = write_study(tmp_path, ROWS, extra={"cleaning": {"outliers": {"method": "mad"}}})
    with pytest.raises(ParamError) as e:
        load_study(p)
    assert "cleaning.outliers.method" in str(e.value)
    assert "'iqr'" in str(e.value) and "'zscore'" in str(e.value)


def test_wrong_type(tmp_path):
    p = write_study(tmp_path, ROWS, extra={"cleaning": {"outliers": {"threshold": "big"}}})
    with pytest.raises(ParamError, match=r"cleaning\.outliers\.threshold"):
        load_study(p)


def test_missing_input_file(tmp_path):
    p = write_study(tmp_path, ROWS)
    (tmp_path / "tx.csv").unlink()
    with pytest.raises(ParamError, match=r"inputs\.transactions\.path: file not found"):
        load_study(p)


def test_missing_required_key(tmp_path):
    p = write_study(tmp_path, ROWS)
    data = yaml.safe_load(p.read_text())
    del data["client"]
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ParamError, match="client: required"):
        load_study(p)


def test_overrides_are_typed_and_validated(tmp_path):
    p = write_study(tmp_path, ROWS)
    s = load_study(p, ["cleaning.outliers.method=zscore", "cleaning.outliers.threshold=2.5",
                       "cleaning.window.start=2024-01-01"])
    assert s.cleaning.outliers.method == "zscore"
    assert s.cleaning.outliers.threshold == 2.5
    assert str(s.cleaning.window.start) == "2024-01-01"
    with pytest.raises(ParamError, match="with --set overrides"):
        load_study(p, ["cleaning.outliers.threshold=-1"])
    with pytest.raises(ParamError, match="Did you mean 'method'"):
        load_study(p, ["cleaning.outliers.methd=iqr"])


def test_parse_override_and_apply():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=[x, y]") == ("a", ["x", "y"])
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ParamError):
        parse_override("novalue")


def test_cli_validate_exit_codes(tmp_path, capsys):
    p = write_study(tmp_path, ROWS)
    assert main(["validate", str(p)]) == 0
    assert main(["validate", str(p), "--set", "cleaning.nope=1"]) == 2
    assert "cleaning.nope: unknown key" in capsys.readouterr().err


def test_mapped_column_missing_names_column_and_file(tmp_path, capsys):
    p = write_study(tmp_path, ROWS, columns={"customer_id": "customer", "date": "Date", "amount": "amount"})
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "inputs.transactions.columns.date" in err and "'Date'" in err and "tx.csv" in err
    assert "Did you mean 'date'" in err


@pytest.mark.parametrize("extra, occasion", [
    ({}, "auto"),
    ({"occasion": "month"}, "month"),
    ({"rfm": {"frequency": "days"}}, "day"),  # an earlier file: read as the one occasion
    ({"journey": {"cycles": {"occasion": "week"}}}, "week"),
    ({"rfm": {"frequency": "auto"}, "journey": {"cycles": {"occasion": "day"}}}, "auto"),  # orders on their day
    ({"occasion": "month", "journey": {"cycles": {"occasion": "month"}}}, "month"),
])
def test_the_purchase_occasion_is_set_once_per_study(tmp_path, extra, occasion):
    study = load_study(write_study(tmp_path, ROWS, extra=extra))
    assert study.occasion == occasion
    dumped = yaml.safe_load(study.to_yaml())
    assert "frequency" not in dumped["rfm"] and "occasion" not in dumped["journey"]["cycles"]


@pytest.mark.parametrize("extra", [
    {"rfm": {"frequency": "days"}, "journey": {"cycles": {"occasion": "month"}}},  # CLV by day, journey by month
    {"occasion": "day", "journey": {"cycles": {"occasion": "month"}}},
    {"occasion": "week", "rfm": {"frequency": "days"}},
])
def test_two_definitions_of_an_occasion_that_disagree_are_refused_with_the_line_to_write(tmp_path, extra):
    p = write_study(tmp_path, ROWS, extra=extra)
    with pytest.raises(ParamError) as e:
        load_study(p)
    msg = str(e.value)
    assert "defined once per study" in msg and "occasion: day|week|month|order" in msg and str(p) in msg
