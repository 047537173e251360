"""YAML files users hand shipscope are read within bounds: an alias bomb and nesting too deep to read are refused
with the file named, while a document that really uses aliases (anchors for shared settings) reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipscope.deploy.smoke import load_plan
from shipscope.errors import InputError
from shipscope.slo import load_slos
from shipscope.yamlfiles import MAX_NODES, load_yaml_file, load_yaml_file_documents


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    return "\n".join([*lines, "checks: *a8", "slos: *a8"]) + "\n"


@pytest.mark.parametrize("read", [load_plan, load_slos, load_yaml_file, load_yaml_file_documents])
def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, read: object) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    with pytest.raises(InputError) as raised:
        read(path)  # type: ignore[operator]
    assert str(path) in raised.value.message and f"over the {MAX_NODES:,} allowed" in raised.value.message


def test_nesting_too_deep_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InputError, match="nested too deeply"):
        load_yaml_file(path)


def test_real_aliases_read(tmp_path: Path) -> None:
    path = tmp_path / "smoke.yaml"
    path.write_text(
        "auth: &auth {Authorization: 'Bearer x'}\n"
        "checks:\n  - {name: a, url: 'http://x/a', headers: *auth}\n  - {name: b, url: 'http://x/b', headers: *auth}\n"
    )
    assert load_yaml_file(path)["checks"][1]["headers"] == {"Authorization": "Bearer x"}
    missing = tmp_path / "missing.yaml"
    with pytest.raises(InputError, match="missing.yaml"):
        load_yaml_file(missing)
