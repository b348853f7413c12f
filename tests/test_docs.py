"""The reference page documents every reward and metric type and each of its options."""

import re

from rewardctl.metrics import METRICS
from rewardctl.rewards import REGISTRY
from rewardctl.rewards.base import RewardConfig


def test_every_type_and_option_is_documented(root):
    text = (root / "docs" / "rewards.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE))
    documented = {name.strip() for heading in headings for name in heading.split(",")}
    common = set(RewardConfig.model_fields)
    for registry in (REGISTRY, METRICS):
        for type_name, cls in registry.items():
            assert type_name in documented, f"no section for {type_name}"
            for field_name, field in cls.config_model.model_fields.items():
                if field_name in common and registry is REGISTRY:
                    continue  # documented once, under "Options every reward takes"
                option = field.alias or field_name
                assert f"`{option}`" in text, f"{type_name}.{option} is not documented"
    for option in common:
        assert f"`{option}`" in text, f"common option {option} is not documented"


def test_readme_links_the_reference(root):
    readme = (root / "README.md").read_text()
    assert "docs/rewards.md" in readme and "docs/synalinks.md" in readme
