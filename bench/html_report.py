"""report.html at scale: its size, the time to build it, and how fast it is in a browser.

    python bench/html_report.py [--rows 10000] [--seed 0] [--repeats 3] [--keep DIR] [--no-browser]

Writes a predictions file of synthetic rows (a question and a context paragraph in, an answer
and a label out; about 70% right, some wrong answers or labels, 3% failed at the provider, 2%
unparseable replies with their raw reply kept), scores it with `rewardctl score`'s pipeline
(exact_match, f1_score, a length metric) and writes report.json, report.md and report.html.
Then prints:
  - the page's size (bytes, MB) and the time to build it in Python (render(report, "html"));
  - in headless Chromium (Debian's chromium and chromium-driver, through selenium), the median
    over --repeats fresh loads of navigationStart -> loadEventEnd and of the time until the
    table shows its first rows;
  - the time the page takes to apply a text filter (filter, sort, render and lay out the first
    page of rows), a status filter, a sort by a column, and to render every row ("show all").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WORDS = ["paris", "london", "capital", "river", "mountain", "city", "north", "south", "old", "new", "great",
         "small", "blue", "red", "green", "house", "market", "bridge", "station", "tower", "harbor", "island",
         "valley", "forest", "lake", "road", "the", "of", "and", "which", "is", "in", "a", "near", "largest"]
LABELS = ["geography", "history", "science", "culture"]
SPEC = """\
name: html-bench
model:
  name: openai/gpt-4o-mini
inputs:
  question: string
  context: string
outputs:
  answer: string
  label: {type: enum, values: [geography, history, science, culture]}
rewards:
  - {name: em, type: exact_match, in_mask: [answer]}
  - {name: f1, type: f1_score, in_mask: [answer]}
  - {name: label_match, type: exact_match, in_mask: [label], weight: 0.5}
"""


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_line(i: int, rng: random.Random) -> dict:
    question = words(rng, rng.randint(8, 18)).capitalize() + "?"
    truth = {"answer": words(rng, rng.randint(1, 4)), "label": rng.choice(LABELS)}
    line = {"index": i, "line": i + 1, "inputs": {"question": question, "context": words(rng, rng.randint(40, 90))},
            "y_true": truth, "latency_s": round(rng.uniform(0.3, 2.5), 3), "tokens": {"prompt": 180, "completion": 12}}
    draw = rng.random()
    if draw < 0.03:
        line.update(y_pred=None, status="error", error="timeout: no reply after 30 s (3 attempts)", error_kind="timeout")
    elif draw < 0.05:
        line.update(y_pred=None, status="error", error="unparseable reply: expected a JSON object",
                    error_kind="unparseable", raw="Sure! The answer is " + words(rng, 30) + " {\"answer\": ")
    elif draw < 0.20:
        line["y_pred"] = {"answer": words(rng, rng.randint(1, 4)), "label": truth["label"]}
    elif draw < 0.27:
        line["y_pred"] = {"answer": truth["answer"], "label": rng.choice(LABELS)}
    else:
        line["y_pred"] = dict(truth)
    return line


def build(rows: int, seed: int, workdir: Path) -> tuple[Path, float]:
    """Score the synthetic rows into ``workdir/out``; return report.html and its build time."""
    from rewardctl.report import render, write_eval_outputs
    from rewardctl.scorefile import ScoreOptions, score_predictions
    from rewardctl.spec import load_spec

    rng = random.Random(seed)
    path = workdir / "predictions_in.jsonl"
    with open(path, "w") as handle:
        handle.writelines(json.dumps(make_line(i, rng)) + "\n" for i in range(rows))
    (workdir / "spec.yaml").write_text(SPEC)
    out = workdir / "out"
    report = asyncio.run(score_predictions(load_spec(workdir / "spec.yaml"),
                                           ScoreOptions(predictions=str(path), out_dir=str(out)),
                                           write_report=lambda r: write_eval_outputs(out, r)))
    started = time.perf_counter()
    render(report, "html")
    return out / "report.html", time.perf_counter() - started


def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


LOAD_TIMES = """
const t = performance.timing, body = document.body.dataset;
return [t.loadEventEnd - t.navigationStart, parseFloat(body.firstRowsMs), parseFloat(body.scriptMs)];
"""
# Apply a filter the way the form does (its submit handler runs it at once, no typing delay).
FILTER = """
const [query, statuses] = arguments, form = document.getElementById("filters");
document.getElementById("search").value = query;
form.querySelectorAll("input[name=status]").forEach((box) => { box.checked = statuses.includes(box.value); });
const t = performance.now();
form.requestSubmit();
void document.body.offsetHeight;  // the layout too
return [performance.now() - t, document.getElementById("count").textContent];
"""
CLICK = """
const t = performance.now();
document.querySelector(arguments[0]).click();
void document.body.offsetHeight;  // the layout too
return [performance.now() - t, document.querySelectorAll("#rows tbody tr.row").length];
"""


def measure(page: Path, repeats: int) -> None:
    driver = browser()
    try:
        loads = []
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(page.as_uri())
            loads.append(driver.execute_script(LOAD_TIMES))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        load, first, script = (statistics.median(x[k] for x in loads) for k in range(3))
        print(f"load (navigationStart -> loadEventEnd)  {load:8.0f} ms   median of {repeats}: "
              f"{', '.join(f'{x[0]:.0f}' for x in loads)}")
        print(f"first rows in the table                 {first:8.0f} ms   (the table script itself: {script:.0f} ms)")
        all_statuses = ["pass", "fail", "error", "ungraded"]
        for label, query, statuses in (("text filter 'harbor island' (cold)", "harbor island", all_statuses),
                                       ("text filter 'tower bridge' (warm)", "tower bridge", all_statuses),
                                       ("status filter: errors only", "", ["error"]),
                                       ("clear the filters", "", all_statuses)):
            ms, count = driver.execute_script(FILTER, query, statuses)
            print(f"{label:<40}{ms:8.1f} ms   {count}")
        ms, shown = driver.execute_script(CLICK, "th[data-col='score:1']")
        print(f"{'sort by a score column':<40}{ms:8.1f} ms   {shown} rows on screen")
        ms, shown = driver.execute_script(CLICK, "#all")
        print(f"{'show all (every row in the DOM)':<40}{ms:8.1f} ms   {shown} rows on screen")
        print(f"browser console errors: {len(severe)}")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="page loads; the median is printed")
    parser.add_argument("--keep", type=Path, help="write the run here (kept) instead of a temporary folder")
    parser.add_argument("--no-browser", action="store_true", help="size and build time only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        page, build_s = build(args.rows, args.seed, workdir)
        data = json.loads((page.parent / "report.json").read_text())["summary"]
        size = page.stat().st_size
        print(f"rows={args.rows:,} seed={args.seed} ({data['errors']:,} errors, mean reward {data['reward']:.3f})")
        print(f"report.html                             {size:>12,} bytes   {size / 1e6:.2f} MB "
              f"({size / max(args.rows, 1):,.0f} bytes a row)")
        print(f"build (render(report, 'html'))          {build_s * 1000:8.0f} ms")
        if not args.no_browser:
            measure(page, args.repeats)


if __name__ == "__main__":
    main()
