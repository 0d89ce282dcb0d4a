"""ReKV end to end on a CUDA device, checked against the same memory on the CPU.

One random-weight LLaVA-OneVision (``_videoqa.CPU_SHAPE``: small, float32) is saved once and loaded
twice, on the CPU and on ``--device``. The same stream of random frames goes into a ReKV memory on
each; then one question is asked. Per storage codec (``none`` with a device block cache, and
``int8-channel``, whose coding runs the quant8 kernel on the device) it checks:

* encoding: the last encoded block's hidden state on the device matches the CPU's (relative error);
* retrieval: the blocks the Triton ``block_topk`` kernel picks on the device are the blocks the torch
  reference picks on the same device (``kernel_backend="triton"`` vs ``"torch"``), and how many of
  them the CPU memory picks too;
* answering: the greedy answer's token ids on the device vs on the CPU (reported, not required:
  random weights make near-ties, so a float difference can flip a token).

TF32 is switched off so the device computes in float32 like the CPU. Exit status 1 when a required
check fails; results go to ``benchmarks/results/gpu_smoke_rekv.json``. Without CUDA (and the default
``--device cuda``) it says so and exits 0 without writing; ``--device cpu`` with ``TRITON_INTERPRET=1``
runs the same checks on the CPU (the Triton kernels in the interpreter), to check the script itself.

    python benchmarks/gpu_smoke_rekv.py [--frames 48] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import print_table, save
from _videoqa import CPU_SHAPE, QUESTION, frames

HIDDEN_RTOL = 1e-3  # float32 on two devices: different kernels, same maths
CODECS = (("none", 8), ("int8-channel", 0))  # (codec, device_cache_blocks)


def ingest(llm, config, stream):
    from memstream.streaming.videomem.rekv import ReKVMemory

    memory = ReKVMemory(llm, config)
    for frame in stream:
        memory.update(frame)
    memory.flush()
    return memory


def check_codec(llm_cpu, llm_dev, stream, codec: str, cache_blocks: int, new_tokens: int) -> dict:
    from memstream.streaming.videomem.generation import SamplingConfig
    from memstream.streaming.videomem.rekv import ReKVConfig

    def config(backend: str, cache: int) -> ReKVConfig:
        return ReKVConfig(window_frames=8, topk=8, codec=codec, device_cache_blocks=cache, kernel_backend=backend)

    started = time.perf_counter()
    cpu = ingest(llm_cpu, config("torch", 0), stream)
    dev_triton = ingest(llm_dev, config("triton", cache_blocks), stream)
    dev_torch = ingest(llm_dev, config("torch", cache_blocks), stream)
    hidden_cpu, hidden_dev = cpu.last_hidden.float().cpu(), dev_triton.last_hidden.float().cpu()
    hidden_rel = float((hidden_dev - hidden_cpu).norm() / hidden_cpu.norm().clamp_min(1e-12))

    picked = {name: memory.retrieve(QUESTION).block_ids for name, memory in
              (("cpu", cpu), ("triton", dev_triton), ("torch", dev_torch))}
    layers, k = picked["cpu"].shape

    def shared(a: torch.Tensor, b: torch.Tensor) -> int:
        return sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True))

    sampling = SamplingConfig(max_new_tokens=new_tokens)
    answer_cpu, answer_dev = cpu.ask(QUESTION, sampling), dev_triton.ask(QUESTION, sampling)
    summary = dev_triton.memory_summary()
    for memory in (cpu, dev_triton, dev_torch):
        memory.close()
    row = {
        "codec": codec, "device_cache_blocks": cache_blocks, "frames": len(stream), "layers": layers, "topk": k,
        "hidden_rel_err": hidden_rel,
        "triton_equals_torch_on_device": bool(torch.equal(picked["triton"], picked["torch"])),
        "blocks_shared_triton_torch": shared(picked["triton"], picked["torch"]),
        "blocks_shared_device_cpu": shared(picked["triton"], picked["cpu"]),
        "blocks_total": layers * k,
        "answer_tokens_device": answer_dev.token_ids.tolist(), "answer_tokens_cpu": answer_cpu.token_ids.tolist(),
        "answers_equal": answer_dev.token_ids.tolist() == answer_cpu.token_ids.tolist(),
        "ttft_device_s": answer_dev.time_to_first_token_s, "ttft_cpu_s": answer_cpu.time_to_first_token_s,
        "store": summary.get("store"), "seconds": time.perf_counter() - started,
    }
    row["passed"] = row["hidden_rel_err"] <= HIDDEN_RTOL and row["triton_equals_torch_on_device"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames streamed into each memory")
    parser.add_argument("--new-tokens", type=int, default=8, help="greedy answer length")
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU")
    args = parser.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this smoke test checks ReKV on a GPU against the CPU; nothing written")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from memstream.streaming.videomem.adapters import load_video_llm
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    with tempfile.TemporaryDirectory(prefix="memstream-smoke-") as tmp:
        path = build_tiny_llava_onevision(Path(tmp), **CPU_SHAPE)
        llm_cpu = load_video_llm(str(path), device="cpu", dtype="float32")
        llm_dev = load_video_llm(str(path), device=args.device, dtype="float32")
    stream = frames(args.frames, CPU_SHAPE["image_size"], seed=1)
    rows = []
    for codec, cache_blocks in CODECS:
        rows.append(check_codec(llm_cpu, llm_dev, stream, codec, cache_blocks, args.new_tokens))
        print({key: value for key, value in rows[-1].items() if key != "store"}, flush=True)
    device_name = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else args.device
    passed = all(row["passed"] for row in rows)
    path = save("gpu_smoke_rekv", {"device": device_name, "shape": CPU_SHAPE, "hidden_rtol": HIDDEN_RTOL,
                                    "rows": rows, "passed": passed})
    print_table(f"ReKV on {device_name} vs CPU (float32, {args.frames} frames, one question)",
                ["codec", "hidden rel err", "triton = torch", "shared dev/cpu", "answers equal", "passed"],
                [[r["codec"], f"{r['hidden_rel_err']:.1e}", r["triton_equals_torch_on_device"],
                  f"{r['blocks_shared_device_cpu']}/{r['blocks_total']}", r["answers_equal"], r["passed"]] for r in rows])
    print(f"{'PASSED' if passed else 'FAILED'}; wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
