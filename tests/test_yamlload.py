import pytest

from rewardctl.errors import InputError
from rewardctl.yamlload import load_yaml


def test_lines_are_recorded_for_keys_and_items():
    doc = load_yaml("a: 1\nb:\n  - x: 2\n  - y: 3\n", "f.yaml")
    assert doc.data == {"a": 1, "b": [{"x": 2}, {"y": 3}]}
    assert doc.line_of(("a",)) == 1
    assert doc.line_of(("b", 1, "y")) == 4
    assert doc.line_of(("b", 0, "missing")) == 3  # falls back to the parent


def test_duplicate_key_is_an_error_with_its_line():
    with pytest.raises(InputError) as err:
        load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(err.value) == "f.yaml:3: duplicate key 'a'"


def test_syntax_error_names_line():
    with pytest.raises(InputError) as err:
        load_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert str(err.value).startswith("f.yaml:")
    assert "invalid YAML" in str(err.value)


def test_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        bomb += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    with pytest.raises(InputError, match="alias bomb"):
        load_yaml(bomb, "bomb.yaml")


def test_python_tags_are_not_executed():
    with pytest.raises(InputError):
        load_yaml("a: !!python/object/apply:os.system ['echo hi']\n", "f.yaml")


def test_empty_document():
    with pytest.raises(InputError, match="empty"):
        load_yaml("", "f.yaml")
