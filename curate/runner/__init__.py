"""The build runner in stages: read sources -> ingest -> row steps -> global steps -> write.

Every stage reads the parquet parts the previous stage spilled into the run folder
(`<work_dir>/runs/<key>/`, see `state.RunDir`) and spills its own, so the rows in memory at any time are
one batch (`batch_rows`, default 50,000) for sources, ingest and row steps, and one stage's frame for a
global step. Each completed shard or stage leaves a `.done` marker holding its accounting; a killed build
re-run with the same recipe, sources, limit and options resumes after its last marker. The run folder is
removed once the build folder has been renamed into place.

- `sources.py`  read every source in batches (`stream_source`), conform, spill; then ingest: repeats of a
                content id across sources are rejected using only the (id, source, source_id) keys.
- `rows.py`     consecutive `scope="row"` steps run together, shard by shard (ctx.rank = shard index,
                ctx.world_size = number of shards); an executor (local or Ray) maps shards.
- `globals.py`  one `scope="global"` step (dedup, decontaminate, mix) over the whole spilled stage; its
                per-part passes (`KeyParts.map`) go to the executor too.
- `write.py`    output shards (same bytes as the in-memory runner), rejects, scores, manifest, report,
                card, into a temporary folder renamed into place.
- `accounting.py` rows_in == kept + rejected per step, per shard and overall; merging of shard metadata.
"""
