"""`build` sources + `mix` step: built preference datasets (real MedQA / MedMCQA rows) combined by weight."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.build import run_build
from curate.errors import InputError, MedcurateError
from curate.recipe import SourceSpec
from curate.resources import recipes_dir
from curate.sources import read_source
from curate.steps.mix import allocate
from synth.testing import Reply, ScriptedServer

REASONING = (
    "The stem asks which explanation fits every finding at once. Weighing the history, the examination and "
    "the laboratory values against each choice rules most of them out on at least one point."
)


def guesser(req: dict) -> Reply:
    """A blind policy that answers a letter chosen by the request seed: right about a quarter of the time."""
    return Reply(f"{REASONING}\n\nAnswer: {'ABCD'[int(req['seed']) % 4]}")


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """Two real preference builds: medqa-dpo (60 questions) and medmcqa-dpo (30 questions)."""
    root = tmp_path_factory.mktemp("builds")
    out = {}
    with pytest.MonkeyPatch.context() as mp, ScriptedServer(guesser) as srv:
        mp.setenv("MEDCURATE_BUILDS", str(root))
        opts = {"teacher_url": [srv.url], "teacher_model": "scripted"}
        # MedMCQA train is not in the shared data, so its dev rows stand in for training rows: a copy of the
        # shipped recipe that does not check them against themselves (the shipped benchmark pack holds them).
        stand_in = root / "medmcqa-dpo.yaml"
        stand_in.write_text((recipes_dir() / "medmcqa-dpo.yaml").read_text().replace(
            "  - decontaminate: {}", "  - decontaminate: {benchmarks: [medqa_test, medmcqa_test, pubmedqa_test, "
            "mmlu_medical_test, headqa_test]}", 1))
        for recipe, src, path, limit in (
            ("medqa-dpo", "medqa", data_dir / "medqa" / "train_subset1030.json", 60),
            (str(stand_in), "medmcqa", data_dir / "medmcqa" / "dev_first3683.json", 30),
        ):
            res = run_build(recipe, source_overrides={src: str(path)}, limit=limit, options=opts)
            assert res.manifest["rows_out"] > 5
            out[Path(recipe).stem] = res.path
    return out


def _mix(parts: dict[str, Path], out: Path | None = None):
    """Build the shipped mix recipe on the two parts (`out`: a fresh folder, for repeat builds in one second)."""
    overrides = {"medqa-dpo": str(parts["medqa-dpo"]), "medmcqa-dpo": str(parts["medmcqa-dpo"])}
    return run_build("medical-dpo-mix", source_overrides=overrides, out=out)


def test_allocate_rules() -> None:
    # exact shares without `total`: the scarcest group (per unit of weight) is taken whole
    assert allocate({"a": 100, "b": 10}, {"a": 2, "b": 1}, None) == {"a": 20, "b": 10}
    assert allocate({"a": 100, "b": 10}, {"a": 1, "b": 1}, None) == {"a": 10, "b": 10}
    # `total`: largest remainders sum to the total; a short group gives what it has, no top-up
    assert allocate({"a": 7, "b": 7, "c": 7}, {"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert allocate({"a": 100, "b": 10}, {"a": 2, "b": 1}, 60) == {"a": 40, "b": 10}
    # weight 0 drops a group; no rows or no weight gives nothing
    assert allocate({"a": 100, "b": 10}, {"a": 1, "b": 0}, None) == {"a": 100, "b": 0}
    assert allocate({"a": 5}, {"a": 0}, None) == {"a": 0}


def test_build_source_reads_a_build(parts: dict[str, Path], tmp_path: Path) -> None:
    build = parts["medqa-dpo"]
    manifest = json.loads((build / "manifest.json").read_text())
    built = pl.read_parquet(build / "data")
    for where in (build, build / "manifest.json"):
        data = read_source(SourceSpec(name="qa", format="build", path=str(where)), base_dir=tmp_path)
        assert data.frame.height == manifest["rows_out"] == data.info["rows"] and data.rejected.height == 0
        assert data.frame["id"].to_list() == built["id"].to_list()
        assert data.frame["source"].unique().to_list() == ["qa"]
        assert data.frame["source_id"].str.starts_with("medqa:").all()
        assert data.frame["chosen"].to_list() == built["chosen"].to_list()
        assert data.frame["prompt"].to_list() == built["prompt"].to_list()
    assert data.info["sha256"] == __import__("hashlib").sha256((build / "manifest.json").read_bytes()).hexdigest()


def test_build_source_errors(parts: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "medqa-dpo" / "b1"
    shutil.copytree(parts["medqa-dpo"], copy)
    (copy.parent / "LATEST").write_text("b1\n")
    ok = read_source(SourceSpec(name="qa", format="build", path=str(copy.parent / "LATEST")), base_dir=tmp_path)
    assert ok.frame.height > 0
    shard = next((copy / "data").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(MedcurateError, match="corrupted|changed"):
        read_source(SourceSpec(name="qa", format="build", path=str(copy)), base_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a build"):
        read_source(SourceSpec(name="qa", format="build", path=str(tmp_path / "notes.txt")), base_dir=tmp_path)


def test_medical_dpo_mix_equal_weights(parts: dict[str, Path], work: Path) -> None:
    import datasets
    from trl.data_utils import is_conversational

    sizes = {name: json.loads((p / "manifest.json").read_text())["rows_out"] for name, p in parts.items()}
    res = _mix(parts)
    m = res.manifest
    data = pl.read_parquet(res.path / "data")
    small = min(sizes.values())
    step = next(s for s in m["steps"] if s["name"] == "mix")
    assert m["rows_in"] == sum(sizes.values()) == m["rows_out"] + m["rows_rejected"]
    # equal weights, no total: the largest exact 1:1 mix (every row of the smaller part)
    dedup_out = next(s for s in m["steps"] if s["name"] == "dedup")["rows_kept"]
    assert step["rows_in"] == dedup_out
    counts = dict(data.group_by("source").len().iter_rows())
    assert counts["medqa-dpo"] == counts["medmcqa-dpo"] <= small
    assert step["reasons"] == {"mix_downsampled": step["rows_rejected"]}
    rej = pl.read_parquet(res.path / "rejects" / "mix.parquet")
    assert rej["detail"].str.contains("kept").all() and set(rej["source"]) == {"medqa-dpo"}
    # preference columns survive; contract columns no row uses are dropped (TRL picks any of its keys)
    assert {"prompt", "chosen", "rejected"} <= set(data.columns) and not {"messages", "cot"} & set(data.columns)
    assert any(t["title"].startswith("Mix by source") for t in step["stats"]["report_tables"])
    ds = datasets.load_dataset("parquet", data_files=str(res.path / "data" / "*.parquet"), split="train")
    assert ds.num_rows == data.height and all(is_conversational(ex) for ex in ds.select(range(5)))
    # same inputs, same seed: the same bytes
    assert _mix(parts, out=work / "again").manifest["output"]["sha256"] == m["output"]["sha256"]


def test_mix_weights_total_and_seed(parts: dict[str, Path], work: Path) -> None:
    import yaml

    base = yaml.safe_load((recipes_dir() / "medical-dpo-mix.yaml").read_text())
    (work / "recipes").mkdir()
    runs = iter(range(100))

    def run(mix_params: dict, weights: tuple[float, float]) -> tuple[pl.DataFrame, dict]:
        recipe = {**base, "steps": [{"dedup": {}}, {"mix": mix_params}],
                  "sources": [{**src, "weight": w} for src, w in zip(base["sources"], weights, strict=True)]}
        (work / "recipes" / "medical-dpo-mix.yaml").write_text(yaml.safe_dump(recipe))
        res = _mix(parts, out=work / f"run-{next(runs)}")
        return pl.read_parquet(res.path / "data"), next(s for s in res.manifest["steps"] if s["name"] == "mix")

    data, step = run({"total": 12}, (2.0, 1.0))
    assert dict(data.group_by("source").len().iter_rows()) == {"medqa-dpo": 8, "medmcqa-dpo": 4}
    again, _ = run({"total": 12}, (2.0, 1.0))
    assert again["id"].to_list() == data["id"].to_list()
    other, _ = run({"total": 12, "seed": 7}, (2.0, 1.0))
    assert set(other["id"]) != set(data["id"])
    # weight 0 drops a part; a total beyond a part's share leaves a reported shortfall (no upsampling)
    data0, step0 = run({}, (1.0, 0.0))
    assert set(data0["source"]) == {"medqa-dpo"} and "medmcqa-dpo" in step0["stats"]["groups"]
    big, step_big = run({"total": 100000}, (1.0, 1.0))
    assert big["id"].n_unique() == big.height == step_big["rows_in"]
    assert step_big["stats"]["shortfall"] and step_big["rows_rejected"] == 0


def test_build_source_reads_a_registry_version(parts: dict[str, Path], work: Path) -> None:
    """A version pushed to the local registry and pulled out (`curate pull REF --out DIR`) reads like a build."""
    from curate import registry

    registry.push("medqa-dpo", "1.0.0", build=parts["medqa-dpo"])
    snap = registry.pull("local/medqa-dpo@v1.0.0", out=work / "pulled")
    built = pl.read_parquet(parts["medqa-dpo"] / "data")
    for where in (snap.path, registry.pull("local/medqa-dpo@v1.0.0").path):
        data = read_source(SourceSpec(name="qa", format="build", path=str(where)), base_dir=work)
        assert data.frame["id"].to_list() == built["id"].to_list()
        assert data.frame["rejected"].to_list() == built["rejected"].to_list()


def test_mix_by_other_column_needs_weights(tmp_path: Path) -> None:
    from curate.errors import RecipeError
    from curate.record import to_frame
    from curate.steps import BuildContext, get_step

    frame = to_frame([{"source": "s", "source_id": f"{t}{i}", "task": t, "question": f"question {t} {i}",
                       "answer": "x"} for t in ("open_qa", "dialogue") for i in range(6)])
    ctx = BuildContext(recipe_name="t", work_dir=tmp_path)
    res = get_step("mix")({"by": "task", "weights": {"open_qa": 1, "dialogue": 2}}).apply(frame, ctx)
    assert dict(res.kept.group_by("task").len().iter_rows()) == {"open_qa": 3, "dialogue": 6}
    assert res.rejected["reason"].to_list() == ["mix_downsampled"] * 3
    with pytest.raises(RecipeError, match="no weight for task"):
        get_step("mix")({"by": "task"}).apply(frame, ctx)
    with pytest.raises(RecipeError, match="not in the data"):
        get_step("mix")({"by": "nope"}).apply(frame, ctx)


def test_build_source_reads_a_registry_ref(work: Path) -> None:
    """`format: build` with `path: org/name@vX` pulls the version (hashes verified) and reads its rows."""
    import yaml

    from curate import registry

    built = run_build("demo")
    registry.push("demo", "1.0.0", build=built.path.name)
    (work / "recipes").mkdir(exist_ok=True)
    (work / "recipes" / "from-tag.yaml").write_text(yaml.safe_dump({
        "name": "from-tag", "description": "rows of a published version", "license": "apache-2.0",
        "sources": [{"name": "demo", "format": "build", "path": "local/demo@v1.0.0"}],
        "steps": [{"validate": {}}],
    }))
    again = run_build("from-tag")
    assert again.manifest["rows_in"] == built.manifest["rows_out"] == again.manifest["rows_out"]
    original = pl.read_parquet(built.path / "data")
    reread = pl.read_parquet(again.path / "data")
    assert reread["id"].to_list() == original["id"].to_list()
    assert reread["messages"].to_list() == original["messages"].to_list()
    assert reread["source_id"][0] == f"demo-mcq:{original['source_id'][0]}"
