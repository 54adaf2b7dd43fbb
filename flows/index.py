"""Flow: index a raw MEAD or LRW folder into an index Parquet file and a layout report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.config import DatasetsParams, load_section
from eamm.datasets import recipe_from_params
from eamm.datasets.index_io import write_index, write_index_report
from tasks.index import index_dataset


@flow(name="index-dataset")
def index_flow(
    dataset: str, out: str, raw: str | None = None, params_path: str = "params.yaml"
) -> dict:
    """Index, write ``out`` (Parquet) and ``<out stem>_report.json``; return the report."""
    datasets = load_section(params_path, "datasets", DatasetsParams)
    default_raw, recipe = recipe_from_params(dataset, datasets)
    index = index_dataset(recipe, raw or default_raw)
    out_path = Path(out)
    write_index(index, out_path)
    report_path = out_path.with_name(f"{out_path.stem}_report.json")
    # The raw folder as configured (relative in params.yaml), so the committed metrics file is
    # the same in every clone (the index stores it relative to itself: stored_root).
    report = write_index_report(index, report_path, root=raw or default_raw)
    splits = Counter(e.split for e in index.entries)
    lines = [f"| {k} | {v} |" for k, v in sorted(splits.items())]
    problems = [f"- `{p.path}`: {p.reason}" for p in index.problems[:200]]
    create_markdown_artifact(
        key=f"index-{dataset}",
        markdown="| split | clips |\n|---|---|\n"
        + "\n".join(lines)
        + (f"\n\n**{len(index.problems)} layout problems**\n" + "\n".join(problems))
        * bool(problems),
        description=f"{dataset} index of {index.root}",
    )
    return report
