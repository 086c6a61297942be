"""The federation file of ``interfed federation up``: the example parses; each mistake is one line naming its entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import ConfigurationError
from services.federation.plan import load_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federation.toml"

GOOD = """
name = "trial"
[operator]
institution = "Trial operator"
[[node]]
node_id = "bank"
institution = "Bank"
platform = "fate"
datasets = ["bank.csv"]
[[node]]
node_id = "hospital"
institution = "Hospital"
platform = "secretflow"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bank.csv").write_text("id,x\na,1\n", encoding="utf-8")
    file = tmp_path / "fed.toml"
    file.write_text(text, encoding="utf-8")
    return file


def test_the_example_file_parses_with_its_paths_resolved() -> None:
    plan = load_plan(EXAMPLE)
    assert [m.config.node_id for m in plan.members] == ["bank", "hospital", "telecom"]
    assert plan.bootstrap is None  # the embedded broker
    assert plan.homes == EXAMPLE.parent / "federation-homes"
    assert all(d.is_file() for m in plan.members for d in m.datasets)
    assert plan.members[0].catalog_policy is not None


def test_defaults_homes_beside_the_file_and_an_operator(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, GOOD))
    assert plan.homes == tmp_path / "fed-homes"
    assert plan.operator.node_id == "operator"
    assert plan.operator.role == "operator"
    assert plan.members[0].home == tmp_path / "fed-homes" / "bank"
    assert plan.members[0].datasets == (tmp_path / "bank.csv",)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.replace('platform = "fate"\n', ""), "node.0.platform"),
        (lambda t: t.replace('node_id = "hospital"', 'node_id = "bank"'), "node.1.node_id: 'bank' is used twice"),
        (lambda t: t.replace('node_id = "hospital"', 'node_id = "Hospital X"'), "node.1.node_id"),
        (lambda t: t.replace('["bank.csv"]', '["nowhere.csv"]'), "node.0.datasets.0: no such file 'nowhere.csv'"),
        (lambda t: t + 'broker = "somewhere"\n', "broker"),
        (lambda t: t.replace('name = "trial"', 'name = "trial"\nbrokr = "embedded"'), "brokr"),
        (lambda t: t.replace("[[node]]", "[[nodes]]"), "node"),
        (
            lambda t: t.replace('institution = "Bank"', 'institution = "Bank"\njob_policy = "p.toml"'),
            "node.0.job_policy",
        ),
        (lambda t: t + "[[node]\n", "not TOML"),
    ],
)
def test_a_bad_entry_is_named_in_one_line(tmp_path: Path, change: object, named: str) -> None:
    file = write(tmp_path, change(GOOD))  # type: ignore[operator]
    with pytest.raises(ConfigurationError) as caught:
        load_plan(file)
    message = str(caught.value)
    assert named in message
    assert str(file) in message
    assert "\n" not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"federation file .*nope\.toml"):
        load_plan(tmp_path / "nope.toml")
