"""datatrove's MinHash deduplication (its four pipeline stages) as a function: texts in, cluster ids out.

The stages run in this process, one rank each, in order (signatures; buckets, one rank per band;
clusters; filter), which is datatrove's own code path without the executor's process spawning: the
fastest way to run it on one machine, so the peer is not charged for start-up it would not pay at scale.
Stage 3 saves cluster ids and stage 4 loads them (`save_cluster_id` / `load_cluster_ids`), so every
document, kept or removed, comes back with the cluster datatrove put it in.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def datatrove_clusters(texts: list[str], *, n_grams: int = 5, num_buckets: int = 14,
                       hashes_per_bucket: int = 8, seed: int = 1) -> np.ndarray:
    """Cluster id per text (documents datatrove left alone get their own index as cluster)."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.writers import JsonlWriter

    cfg = MinhashConfig(n_grams=n_grams, num_buckets=num_buckets, hashes_per_bucket=hashes_per_bucket, seed=seed)
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory(prefix="dt-minhash-") as tmp:
        work = Path(tmp)
        sig = MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)
        sig.run(iter(docs), rank=0, world_size=1)  # a sink: writes the signatures, yields nothing
        buckets = MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)
        for b in range(cfg.num_buckets):
            buckets.run(None, rank=b, world_size=cfg.num_buckets)
        MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg,
                            save_cluster_id=True).run(None, 0, 1)
        removed = JsonlWriter(str(work / "removed"))
        out = np.arange(len(texts))
        kept = list(MinhashDedupFilter(input_folder=str(work / "remove"), exclusion_writer=removed,
                                       load_cluster_ids=True).run(iter(docs), rank=0, world_size=1))
        for doc in docs:  # the filter sets the cluster id on every document it saw, kept or removed
            cid = doc.metadata.get("minhash_cluster_id", -1)
            if cid != -1:
                out[int(doc.id)] = len(texts) + int(cid)
        assert len(kept) <= len(texts)
    return out
