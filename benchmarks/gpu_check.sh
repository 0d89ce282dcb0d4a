#!/usr/bin/env bash
# The CUDA checks of memstream in one run on a GPU machine: the Triton kernel tests compiled on the
# device, a ReKV smoke test (GPU vs CPU) and the --gpu benchmarks, each step under its own timeout
# and all of them under one time budget, continuing past a failing step.
#
# Run from the repository root:  bash benchmarks/gpu_check.sh
#
# Environment (all optional):
#   OUT                  where the log and results.tar.gz go (default /tmp/gpu_check_out)
#   GPU_CHECK_BUDGET     seconds for the whole script (default 450); a step gets what is left
#   GPU_CHECK_STEPS      steps to run, space-separated (default: all, in this order):
#                        env install imports kernels smoke bank latency tracking ingest
#   GPU_CHECK_LOCAL=1    skip the wheel install and use this machine's python (a dry run on a CPU)
#   PYTHON               interpreter (default python3)
#   WHEELS               folder of wheels to install with --no-index --no-deps (default .whl)
#   LATENCY_ARGS, INGEST_ARGS, TRACKING_ARGS, BANK_ARGS, SMOKE_ARGS: override a step's arguments
#
# What comes back: $OUT/gpu_check.log (everything printed) and $OUT/results.tar.gz (each step's log,
# the JSONs the steps wrote into benchmarks/results, the kernel tests' junit XML), rebuilt after
# every step so a run stopped at its limit still returns what finished. The summary at the end lists
# each step's exit status (124: its timeout; "skipped": the budget was spent).
set -u
export PYTHONUNBUFFERED=1 COLUMNS="${COLUMNS:-160}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"   # step logs and results, tarred into $OUT
mkdir -p "$WORK/results"
LOG="$OUT/gpu_check.log"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-450}"
STEPS="${GPU_CHECK_STEPS:-env install imports kernels smoke bank latency tracking ingest}"
FARM="$WORK/site"                           # memstream.* -> the checkout's folders, + its entry points
START_S=$SECONDS
declare -a SUMMARY=()

pack() {  # gather what the steps wrote and rebuild the archive that comes back
    local json
    for json in benchmarks/results/*.json; do  # only the results written during this run
        [ "$json" -nt "$WORK/started" ] && cp -f "$json" "$WORK/results/"
    done
    tar -czf "$OUT/results.tar.gz.part" -C "$WORK" --exclude=site --exclude=started . && \
        mv -f "$OUT/results.tar.gz.part" "$OUT/results.tar.gz"
}

step() {  # step NAME SECONDS COMMAND...: run under min(SECONDS, what the budget has left)
    local name="$1" limit="$2"; shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    local left=$((BUDGET - (SECONDS - START_S) - 15))
    if [ "$left" -lt 20 ]; then
        echo "=== $name: skipped, ${left}s of the budget left"
        SUMMARY+=("$name: skipped (budget)")
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== $name (timeout ${limit}s, $(date -u +%H:%M:%S)): $*"
    local began=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - began))s"
    SUMMARY+=("$name: exit $rc, $((SECONDS - began))s")
    pack
}

main() {
touch "$WORK/started"
sleep 1  # results written from here on are newer than the marker
echo "gpu_check $(date -u +%FT%TZ) in $ROOT; budget ${BUDGET}s; steps: $STEPS"

# --- env: the machine, the interpreter, the packages that matter ------------------------------
step env 30 bash -c "nvidia-smi 2>&1 | head -15; git log -1 --oneline 2>/dev/null; $PY -c \"
import sys, torch
print('python', sys.version.split()[0], sys.executable)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
\"; $PY -m pip list 2>/dev/null | grep -iE '^(torch|triton|transformers|tokenizers|safetensors|numpy|pillow|rich|pyyaml|pytest|pytest-timeout|torchvision|typing.extensions|portalocker) '"

# --- install: carried wheels into /tmp/site (no network there) ---------------------------------
WHEELS="${WHEELS:-.whl}"
if [ "${GPU_CHECK_LOCAL:-0}" != 1 ]; then
    step install 90 bash -c "ls -la $WHEELS/ && $PY -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site $WHEELS/*.whl && ls /tmp/site"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# memstream.* through a farm of links (the checkout's folders are memstream's subpackages, as
# pyproject's package-dir maps them), and a dist-info holding pyproject's entry points, so the
# stages, commands and grounding providers resolve as in an installed copy.
mkdir -p "$FARM/memstream"
for d in kernels streaming tracking embodied configs; do ln -sfn "$ROOT/$d" "$FARM/memstream/$d"; done
"$PY" - "$ROOT/pyproject.toml" "$FARM" <<'EOF' || echo "warning: no entry points for memstream (tomllib?)"
import sys, tomllib
from pathlib import Path
project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
info = Path(sys.argv[2]) / f"memstream-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: memstream\nVersion: {project['version']}\n")
groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
    for group, entries in groups.items()))
EOF
export PYTHONPATH="$FARM:$PYTHONPATH"
echo "PYTHONPATH=$PYTHONPATH"

# --- imports: everything the steps below import, and the entry points ---------------------------
step imports 90 "$PY" -c "
import importlib, importlib.metadata as md
for name in ('pydantic', 'sam2', 'hydra', 'omegaconf', 'iopath', 'transformers', 'triton', 'rich', 'yaml', 'PIL'):
    module = importlib.import_module(name)
    print(f'{name:14s}', getattr(module, '__version__', '?'), module.__file__)
for name in ('memstream.kernels', 'memstream.streaming.videomem.rekv', 'memstream.streaming.videomem.flash',
             'memstream.embodied.bank', 'memstream.tracking.sam2_stream.backend', 'memstream.tracking.tracker'):
    importlib.import_module(name)
    print('ok', name)
for group in ('memstream.stages', 'memstream.commands'):
    print(group, sorted(ep.name for ep in md.entry_points(group=group)))
from memstream.streaming.pipeline.stages import stage_names
print('stages', stage_names())
"

# --- kernels: the Triton kernels compiled on the GPU (the gpu-marked tests included) -----------
# pyproject's addopts deselect -m gpu; the later -m here replaces it. -rs lists any skip.
step kernels 150 "$PY" -m pytest tests/kernels -q -rs -p no:cacheprovider -m "not slow and not weights" \
    --junitxml="$WORK/results/kernels_junit.xml"

# --- smoke: ReKV end to end on the GPU vs the CPU (tiny float32 model, one question) -----------
step smoke 150 "$PY" benchmarks/gpu_smoke_rekv.py ${SMOKE_ARGS:---frames 32}

# --- the --gpu benchmarks (each writes benchmarks/results/*_gpu.json or tracking_gpu.json) ------
step bank 120 "$PY" benchmarks/bench_bank.py --gpu ${BANK_ARGS:---repeats 3}
step latency 180 "$PY" benchmarks/bench_videoqa_latency.py --gpu ${LATENCY_ARGS:---base 32 --repeats 3}
step tracking 180 "$PY" benchmarks/bench_tracking_gpu.py ${TRACKING_ARGS:---frames 120 --sizes t b+}
step ingest 180 "$PY" benchmarks/bench_videoqa_ingest.py --gpu ${INGEST_ARGS:---checkpoints 64 256 512 --repeats 1}

echo
echo "=== summary ($((SECONDS - START_S))s of ${BUDGET}s)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
pack
tar -tzf "$OUT/results.tar.gz" | sed 's/^/  in results.tar.gz: /'
}

main 2>&1 | tee -a "$LOG"  # the steps write their own logs too; this one holds them all
rm -rf "$WORK"
