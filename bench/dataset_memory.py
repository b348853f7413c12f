"""Dataset streaming: rows/s and peak memory of read_rows on every format.

    python bench/dataset_memory.py [--rows 100000,1000000] [--formats jsonl,csv,...] [--dir DIR]

For each size it writes the same rows (inputs: question; outputs: answer; an id and a topic
column kept as meta) as JSON Lines, CSV, TSV, Parquet (in one row group, the worst case for
memory), a Hugging Face save_to_disk folder (Arrow IPC stream in batches of 1,000 rows, 4 files,
with its state.json and dataset_info.json) and a folder of 8 JSONL shards. Then, in a fresh
subprocess per format, it streams every row through read_rows (as eval's prevalidation does) and
reports rows/s and the child's peak RSS (VmHWM), beside a baseline child that only imports
what that reader imports (rewardctl.dataset; and pyarrow.parquet or pyarrow.ipc). Memory is flat
when the peak over the baseline does not grow with the number of rows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = ["jsonl", "csv", "tsv", "parquet", "arrow", "shards"]
PYARROW = {"parquet", "arrow"}
TOPICS = ["arithmetic", "geography", "history", "chemistry", "music", "law"]


def row(i: int, rng: random.Random) -> dict:
    a, b = rng.randrange(1000), rng.randrange(1000)
    return {"id": i, "question": f"What is {a} plus {b}? Answer with the number only.", "answer": str(a + b),
            "topic": rng.choice(TOPICS)}


def rows_of(n: int, chunk: int = 10_000):
    rng = random.Random(0)
    for start in range(0, n, chunk):
        yield [row(i, rng) for i in range(start, min(n, start + chunk))]


def write_all(folder: Path, n: int, formats: list[str]) -> dict[str, Path]:
    paths = {"jsonl": folder / "d.jsonl", "csv": folder / "d.csv", "tsv": folder / "d.tsv",
             "parquet": folder / "d.parquet", "arrow": folder / "hf", "shards": folder / "shards"}
    writers = []
    if "jsonl" in formats:
        writers.append(_jsonl_writer(paths["jsonl"]))
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        if fmt in formats:
            writers.append(_csv_writer(paths[fmt], delimiter))
    if "parquet" in formats:
        writers.append(_parquet_writer(paths["parquet"]))
    if "arrow" in formats:
        writers.append(_hf_writer(paths["arrow"], n, files=4))
    if "shards" in formats:
        writers.append(_shard_writer(paths["shards"], n, files=8))
    for writer in writers:
        next(writer)
    for chunk in rows_of(n):
        for writer in writers:
            writer.send(chunk)
    for writer in writers:
        writer.close()
    return {fmt: paths[fmt] for fmt in formats}


def _jsonl_writer(path: Path):
    with open(path, "w", encoding="utf-8") as f:
        while True:
            chunk = yield
            f.write("".join(json.dumps(r) + "\n" for r in chunk))


def _csv_writer(path: Path, delimiter: str):
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter=delimiter)
        out.writerow(["id", "question", "answer", "topic"])
        while True:
            chunk = yield
            out.writerows([r["id"], r["question"], r["answer"], r["topic"]] for r in chunk)


def _parquet_writer(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    try:
        while True:
            chunk = yield
            tables.append(pa.Table.from_pylist(chunk))
    finally:  # one row group for the whole file: the reader must still stream it
        table = pa.concat_tables(tables)
        pq.write_table(table, path, row_group_size=table.num_rows)


def _hf_writer(folder: Path, n: int, files: int):
    """Dataset.save_to_disk's layout: data-0000K-of-0000N.arrow (Arrow IPC stream), state.json,
    dataset_info.json."""
    import pyarrow as pa

    folder.mkdir()
    names = [f"data-{k:05d}-of-{files:05d}.arrow" for k in range(files)]
    features = {"id": {"dtype": "int64", "_type": "Value"}, "question": {"dtype": "string", "_type": "Value"},
                "answer": {"dtype": "string", "_type": "Value"}, "topic": {"dtype": "string", "_type": "Value"}}
    schema = pa.schema([("id", pa.int64()), ("question", pa.string()), ("answer", pa.string()), ("topic", pa.string())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": name} for name in names],
                                                   "_fingerprint": "bench", "_format_columns": None,
                                                   "_format_kwargs": {}, "_format_type": None,
                                                   "_output_all_columns": False, "_split": None}))
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": features,
                                                          "homepage": "", "license": ""}))
    per_file, in_file, k = -(-n // files), 0, 0
    sink = pa.OSFile(str(folder / names[0]), "wb")
    writer = pa.ipc.new_stream(sink, schema)
    try:
        while True:
            chunk = yield
            start = 0
            while start < len(chunk):
                if in_file == per_file:  # the next file
                    writer.close()
                    sink.close()
                    k, in_file = k + 1, 0
                    sink = pa.OSFile(str(folder / names[k]), "wb")
                    writer = pa.ipc.new_stream(sink, schema)
                part = chunk[start:start + min(1000, per_file - in_file)]
                writer.write_batch(pa.RecordBatch.from_pylist(part, schema=schema))
                start, in_file = start + len(part), in_file + len(part)
    finally:
        writer.close()
        sink.close()


def _shard_writer(folder: Path, n: int, files: int):
    folder.mkdir()
    per_file, written = -(-n // files), 0
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(folder / f"part-{k}.jsonl", "w", encoding="utf-8"))
                   for k in range(files)]
        while True:
            chunk = yield
            for r in chunk:
                handles[written // per_file].write(json.dumps(r) + "\n")
                written += 1


def child(fmt: str, path: str) -> None:
    """Stream every row; print rows, seconds and the peak RSS (KiB) as JSON."""
    from rewardctl.datamodel import FieldSpec
    from rewardctl.dataset import read_rows

    if fmt == "baseline:parquet":
        import pyarrow.parquet
    elif fmt == "baseline:arrow":
        import pyarrow.ipc  # noqa: F401
    rows, started = 0, time.perf_counter()
    if not fmt.startswith("baseline"):
        inputs, outputs = {"question": FieldSpec(type="string")}, {"answer": FieldSpec(type="string")}
        for _ in read_rows(path, inputs, outputs):
            rows += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "maxrss_kib": peak_rss_kib()}))


def peak_rss_kib() -> int:
    """This process's peak resident memory: VmHWM (ru_maxrss would include the parent's peak,
    which a forked child inherits across exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(fmt: str, path: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", fmt, path], check=False, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{fmt}: the child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="Comma-separated sizes.")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--dir", help="Write the files here (default: a temporary folder, removed).")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    formats = [f for f in args.formats.split(",") if f]
    baselines = {kind: measure(kind, "")["maxrss_kib"] for kind in ("baseline", "baseline:parquet", "baseline:arrow")}
    print(f"baseline (a child that only imports): rewardctl.dataset {baselines['baseline'] / 1024:.1f} MiB; "
          f"with pyarrow.parquet {baselines['baseline:parquet'] / 1024:.1f} MiB; with pyarrow.ipc "
          f"{baselines['baseline:arrow'] / 1024:.1f} MiB peak RSS")
    print(f"{'format':<8} {'rows':>10} {'file MB':>8} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13} "
          f"{'over baseline MiB':>18}")
    for n in [int(x) for x in args.rows.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            paths = write_all(Path(tmp), n, formats)
            for fmt, path in paths.items():
                result = measure(fmt, str(path))
                assert result["rows"] == n, (fmt, result)
                base = baselines[f"baseline:{fmt}" if fmt in PYARROW else "baseline"]
                print(f"{fmt:<8} {n:>10,} {size_mb(path):>8.1f} {result['seconds']:>8.2f} "
                      f"{n / result['seconds']:>10,.0f} {result['maxrss_kib'] / 1024:>13.1f} "
                      f"{(result['maxrss_kib'] - base) / 1024:>18.1f}", flush=True)


if __name__ == "__main__":
    main()
