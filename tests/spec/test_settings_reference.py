"""The settings reference in the docs (docs/hooks/settings_reference.py): every field of
Settings, read from the dataclass and its source, so the page cannot lose a setting."""
import dataclasses
import importlib.util
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

from searcher.spec import settings as settings_module
from searcher.spec.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(settings_module.__file__)


def hook(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    return hook("settings_reference")


def test_every_setting_is_in_the_table_with_its_default_and_reason(reference):
    rows = {name: (option, default, what) for name, option, default, what in reference.rows(SOURCE)}
    assert list(rows) == [f.name for f in dataclasses.fields(Settings)]
    assert all(default and what for _, default, what in rows.values())
    table = reference.table(SOURCE)
    for f in dataclasses.fields(Settings):
        assert f"| `{f.name}` |" in table
    # the options are searcher run's, by the setting each sets
    assert rows["time_budget_s"][0] == "`--time-budget`" and rows["strict_data"][0] == "`--strict`"
    assert rows["dataset"][0] == ""
    assert rows["max_params"][1] == "`5_000_000`"  # as the source writes it
    assert "`val_acc`, `val_loss`" in rows["metric"][2]  # one of METRICS, as its names
    assert "&lt;class&gt;" in rows["dataset"][2]  # shown, not taken for an HTML tag


def test_a_setting_without_a_reason_fails_the_build(reference, tmp_path):
    source = SOURCE.read_text(encoding="utf-8").splitlines(keepends=True)
    (line,) = [i for i, text in enumerate(source) if text.lstrip().startswith("throughput_batch:")]
    source[line] = source[line].split("#")[0].rstrip() + "\n"
    bare = tmp_path / "settings.py"
    bare.write_text("".join(source), encoding="utf-8")
    with pytest.raises(PluginError, match="throughput_batch has no reason"):
        reference.rows(bare)


def test_a_page_without_its_marker_fails_the_build(reference):
    page = type("Page", (), {"file": type("File", (), {"src_uri": reference.PAGE})()})()
    with pytest.raises(PluginError, match="settings-reference"):
        reference.on_page_markdown("# Settings\n", page, None, None)
    table = reference.on_page_markdown(f"before\n{reference.MARKER}\nafter\n", page, None, None)
    assert "| `second_objective` |" in table and reference.MARKER not in table
