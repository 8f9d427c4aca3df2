"""``loopml predict``: batch inference of a Parquet file, on every core, resumable.

    $ loopml predict models:/churn@champion --input customers.parquet --output scores.parquet
    $ loopml predict churn@champion --input big.parquet --output out.parquet --workers 8
    $ loopml predict churn/3 --input in.parquet --output out.parquet --executor ray --ray-address auto

Run the same command again after a crash: finished row groups are not recomputed.
loopml.serving.batch (pyarrow, the model libraries) is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    model_uri: Annotated[
        str, typer.Argument(metavar="MODEL_URI", help="models:/NAME@ALIAS, NAME/VERSION or runs:/ID/PATH.")
    ],
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet file to score.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel workers (default: one per core).")
    ] = None,
    executor: Annotated[
        str | None, typer.Option(help="local, process or ray (default: process when there is work for it).")
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="At most this many rows per unit of work (and output row group).")
    ] = 65_536,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns fed to the model (default: its signature).")
    ] = None,
    method: Annotated[str, typer.Option(help="predict or predict_proba.")] = "predict",
    prediction_column: Annotated[str, typer.Option(help="Name of the prediction column.")] = "prediction",
    predictions_only: Annotated[
        bool, typer.Option("--predictions-only", help="Write the predictions without the input columns.")
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard an interrupted job's finished parts and start over.")
    ] = False,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow a pickle-based model (runs code when loaded).")
    ] = False,
    compression: Annotated[
        str, typer.Option(help="Output codec: snappy, zstd, lz4, gzip or none.")
    ] = "snappy",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Predict every row of a Parquet file into another, streaming by row groups."""
    from loopml.serving import batch

    if executor is not None and executor not in batch.EXECUTORS:
        raise typer.BadParameter(f"choose one of {', '.join(batch.EXECUTORS)}", param_hint="--executor")
    result = batch.predict_file(
        model_uri,
        input,
        output,
        workers=workers,
        executor=executor,  # type: ignore[arg-type]  # checked against EXECUTORS above
        batch_rows=batch_rows,
        columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
        method=method,
        prediction_column=prediction_column,
        predictions_only=predictions_only,
        trust_pickle=trust_pickle,
        resume=not restart,
        ray_address=ray_address,
        progress=not (no_progress or as_json),
        compression=compression,
    )
    if as_json:
        import orjson

        typer.echo(orjson.dumps(result.to_dict()).decode())
        return
    resumed = f", {result.skipped} already done by an earlier run" if result.skipped else ""
    typer.echo(
        f"{result.rows} rows in {result.row_groups} row groups{resumed} -> {result.output} "
        f"({result.seconds:.1f}s)"
    )
