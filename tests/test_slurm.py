"""The Slurm + Ray batch template renders to a valid script that starts the cluster and runs the build."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.runner.slurm import SlurmJob, render_slurm


def test_cli_renders_a_script_that_starts_ray_on_every_node_and_builds() -> None:
    result = CliRunner().invoke(app, ["slurm", "medmcqa-sft", "--nodes", "4", "--cpus-per-task", "48",
                                      "--partition", "cpu", "--venv", "/shared/venv",
                                      "--build-arg=--source", "--build-arg", "medmcqa=/data/medmcqa train.jsonl"])
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --nodes=4", "#SBATCH --cpus-per-task=48", "#SBATCH --partition=cpu",
                 "#SBATCH --job-name=medcurate-medmcqa-sft", "source /shared/venv/bin/activate"):
        assert line in script.splitlines()
    assert "ray start --head --node-ip-address=\"$head_ip\"" in script
    assert 'ray start --address="$head_ip:$port"' in script
    # user values are shell-quoted into the build command
    assert ("curate build medmcqa-sft --source 'medmcqa=/data/medmcqa train.jsonl' --executor ray "
            '--ray-address "$head_ip:$port"') in script
    assert "#SBATCH --account" not in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_rendered_script_is_valid_bash(tmp_path) -> None:
    path = tmp_path / "job.sbatch"
    path.write_text(render_slurm(SlurmJob(recipe="recipes/my recipe.yaml", nodes=1, account="proj")))
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert "#SBATCH --job-name=medcurate-my-recipe" in path.read_text()
