"""Can the policy's image path learn which cube has the remembered colour? (issue 17)

RememberColor5/9 policies do not learn the choice even on their training episodes (stop 34: the
first move agrees with the expert's heading on 0.06 of nine-cube training episodes). This isolates
that decision from everything else the policy learns (the reach, the touch, the timing): each
stored demonstration gives one sample, the **memory** (the cue frame and the last empty frame before
the arm may move), the **query** (the first frame the arm moves, when the cubes are in view) and the
**target** (the demonstration's last tip position x, y: the cued cube, where the expert stops). A
model regresses the target from memory and query; a prediction within 4 cm of the cued cube's
position is a right choice (the cubes stand 8-10 cm apart). Encoder, bank read and readout are the
policy's own modules at the settings of its best runs (``PatchEncoder`` 8x8 tokens, max pooling over
16 px, fine position; ``MemoryStream`` with the bank's defaults; ``SpatialReadout`` with 4 heads), so
only what scores the tokens changes between variants:

- ``gate``: the policy's path. Each current token reads the memory (cross-attention), the gate sums
  the current and the read token, the readout scores the sum.
- ``compare``: the readout scores ``Linear([fused; current * read; |current - read|])``, an explicit
  comparison of each token with what it read.
- ``query``: a memory-queried pointer: one readout head picks the salient token of the cue frame,
  and the current tokens are scored by their dot product with it (no MLP scorer).
- ``cue_token``: as ``query`` with the cue's token given: the cue frame's token where the cue cube
  stands (the suite shows it at the table's centre), so nothing has to learn where the cue is.
- ``oracle``: as ``query`` with the cue colour given (a learned embedding of the true colour index):
  no memory to read; how fast the pointer learns to find a known colour at all.

``--pointer-loss W`` adds W x cross-entropy of the pointer's attention (``query``, ``cue_token``,
``oracle``; the readout's first head for ``gate`` / ``compare``) against the token the cued cube
projects into (the suite's base-camera intrinsics and extrinsics): privileged supervision of where
to look, from the demonstration's own end point.

Measured (RememberColor5, 900 training demonstrations, 100 test, 50 held out (seeds 1000-1049), batch
32, Adam 1e-3, 3,000 steps, 0.2-0.3 s a step with two runs side by side on a 2-core machine): with
the cue's colour given, 0.98-1.00 of the choices are right; reading it from memory, no scorer learns
anything (0.00), the policy's gate path included; with ``--pointer-loss 1`` the gate path chooses
right in 0.88 of held-out episodes. ``benchmarks/MIKASA.md``'s "Where the choice is lost: reading the colour from
memory" has the table; ``results/mikasa_binding.json`` every evaluation.

``memstream vla-train --binding-warmup N`` is this warm start inside the policy's training (the gate
path on the policy's own modules, ``memstream.embodied.policies.memvla.binding``).
``--graft-into POLICY --graft-out DIR`` turns the diagnostic into a warm start for a trained policy: after training the
gate variant it writes a copy of a ``vla-train`` policy (same 8x8 tokens, readout 4) whose image
encoder, perceptual memory stream and chunk-prior readout are the trained ones, for ``vla-train
--init-from DIR``. Measured (stop 37): grafted into a RememberColor5 policy, the readout's first head
points at the cued cube's token at the first move in 0.82 of held-out episodes inside the policy's
own unrolled bank (0.18 with the bank wiped there; chance 0.20), against 0.18 for the policy it was
grafted into; the rest of the policy does not read the new features yet (heading within 20 degrees
0.16), which is what the fine-tuning is for.

    python benchmarks/diag_mikasa_binding.py --demos D1 D2 D3 --held DH --variants gate query --steps 1500
    python benchmarks/diag_mikasa_binding.py --demos D1 D2 D3 --held DH --variants gate --pointer-loss 1 \
        --steps 3000 --graft-into RUN/checkpoint --graft-out RUN_GRAFTED
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, print_table, save
from torch import nn

CHOICE_M = 0.04  # a prediction this close to the cued cube picks it (cubes stand 8-10 cm apart)
GRID, DIM, SUBGRID, HEADS = 8, 64, 2, 4  # the policy's best RememberColor settings


def target_tokens(goals: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray, image_px: int) -> torch.Tensor:
    """int64 (B,): the token (row-major, GRID x GRID) the cube at each goal (x, y) projects into (the
    policy's own projection: ``project_to_tokens`` at the objects' centre height)."""
    from memstream.embodied.envs.mikasa.experts import OBJECT_CENTRE_Z_M
    from memstream.embodied.policies.memvla.mikasa import project_to_tokens

    world = np.concatenate([goals, np.full((len(goals), 1), OBJECT_CENTRE_Z_M)], axis=1)
    return torch.as_tensor(project_to_tokens(world, intrinsic, extrinsic, image_px, GRID))


def samples(data) -> dict[str, torch.Tensor]:
    """One sample per episode: memory (E, 2, H, W, 3) uint8, query (E, H, W, 3), goal (E, 2), colour (E,)
    (the warm start's samples, ``binding_samples``, with the cued colour for the oracle variant)."""
    from memstream.embodied.policies.memvla.binding import binding_samples

    return {**binding_samples(data), "colour": torch.as_tensor(data.hidden_info[:, 0])}


def as_float(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [0, 1]."""
    return images.movedim(-1, -3).float() / 255.0


class BindingProbe(nn.Module):
    def __init__(self, variant: str, image_px: int, colours: int) -> None:
        super().__init__()
        from memstream.embodied.bank.config import MemoryBankConfig
        from memstream.embodied.bank.layers import MemoryStream
        from memstream.embodied.policies.memvla.action_head import SpatialReadout
        from memstream.embodied.policies.memvla.encoders import PatchEncoder

        self.variant = variant
        self.encoder = PatchEncoder(image_px, DIM, GRID, "max", SUBGRID, fine_position=True)
        self.memory = MemoryStream(DIM, MemoryBankConfig())
        self.readout = SpatialReadout(DIM, GRID * GRID, HEADS)
        self.head = nn.Sequential(nn.Linear(self.readout.out_dim, 256), nn.GELU(), nn.Linear(256, 2))
        if variant == "compare":
            self.mix = nn.Linear(3 * DIM, DIM)
        if variant in ("query", "cue_token", "oracle"):
            self.cue = {"query": SpatialReadout(DIM, GRID * GRID, 1), "cue_token": nn.Linear(DIM, DIM + 2),
                        "oracle": nn.Embedding(colours, DIM + 2)}[variant]
            self.q, self.k = nn.Linear(DIM + 2, DIM), nn.Linear(DIM, DIM)
            self.pointer_head = nn.Sequential(nn.Linear(DIM + 2, 256), nn.GELU(), nn.Linear(256, 2))
        self.pointer: torch.Tensor | None = None  # the last forward's pointer attention (B, N)
        self.cue_index = 0  # cue_token: the token the cue cube projects into (set by main)

    def forward(self, memory: torch.Tensor, query: torch.Tensor, colour: torch.Tensor, shift: int) -> torch.Tensor:
        from memstream.embodied.policies.memvla.modeling_memvla import random_shift

        batch, frames = memory.shape[:2]
        past, now = as_float(memory).flatten(0, 1), as_float(query)
        if shift:  # the policy's training augmentation (each image its own offset)
            past, now = random_shift(past, shift), random_shift(now, shift)
        current = self.encoder(now)
        if self.variant == "oracle":
            return self._point(self.cue(colour), current)
        stored = self.encoder(past).unflatten(0, (batch, frames))
        if self.variant == "query":
            return self._point(self.cue(stored[:, 0]), current)
        if self.variant == "cue_token":
            return self._point(self.cue(stored[:, 0, self.cue_index]), current)
        steps = torch.arange(frames, dtype=torch.float32).expand(batch, frames)
        fused, read, _ = self.memory(current, stored, steps, torch.ones(batch, frames, dtype=torch.bool))
        if self.variant == "compare":
            fused = self.mix(torch.cat([fused, current * read, (current - read).abs()], dim=-1))
        self.pointer = self.readout.weights(fused)[..., 0]  # the first readout head: what --pointer-loss trains
        return self.head(self.readout(fused))

    def _point(self, cue: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bd,bnd->bn", self.q(cue), self.k(current)) / DIM ** 0.5
        self.pointer = scores.softmax(dim=1)
        where = self.pointer @ self.readout.coords.to(current.dtype)
        return self.pointer_head(torch.cat([where, torch.einsum("bn,bnd->bd", self.pointer, current)], dim=-1))


def evaluate(model: BindingProbe, split: dict[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor,
             cam: tuple[np.ndarray, np.ndarray], image_px: int) -> dict[str, float | None]:
    model.eval()
    predicted, pointed = [], []
    with torch.no_grad():
        for i in range(0, len(split["goal"]), 64):
            part = {k: v[i:i + 64] for k, v in split.items()}
            predicted.append(model(part["memory"], part["query"], part["colour"], shift=0) * std + mean)
            if model.pointer is not None:
                pointed.append(model.pointer.argmax(dim=1))
    model.train()
    error = (torch.cat(predicted) - split["goal"]).norm(dim=1)
    hit = None
    if pointed:
        hit = float((torch.cat(pointed) == target_tokens(split["goal"].numpy(), *cam, image_px)).float().mean())
    return {"choice": round(float((error < CHOICE_M).float().mean()), 3), "error_cm": round(float(error.mean()) * 100, 2),
            "pointer_on_cued_token": None if hit is None else round(hit, 3)}


GRAFT = {"encoder.": "perceptual_encoder.", "memory.": "memory.perceptual.", "readout.": "prior.readout."}


def grafted_weights(model: BindingProbe, policy_dir: str) -> dict[str, torch.Tensor]:
    """The weights of the ``vla-train`` policy in ``policy_dir`` with the modules the gate variant
    shares with it (image encoder, the bank's perceptual stream, the chunk prior's readout) taken
    from ``model``. Refused when a shared weight is missing from the policy or has another shape
    (other grid, width or heads)."""
    from safetensors.torch import load_file

    weights = load_file(str(Path(policy_dir) / "model.safetensors"))
    for name, value in model.state_dict().items():
        prefix = next((p for p in GRAFT if name.startswith(p)), None)
        if prefix is None:
            continue  # the probe's regression head: not part of the policy
        key = GRAFT[prefix] + name[len(prefix):]
        if key not in weights or weights[key].shape != value.shape:
            raise SystemExit(f"error: {policy_dir} has no weight {key} of shape {tuple(value.shape)}: graft into a policy "
                             f"trained with 8x8 tokens, subgrid 2, fine position, readout {HEADS} and a bank")
        weights[key] = value.detach().clone()
    return weights


def graft(model: BindingProbe, policy_dir: str, out: str, steps: int) -> None:
    """Copy the policy in ``policy_dir`` to ``out`` with :func:`grafted_weights`; the config stays,
    and ``mikasa.json`` records what was grafted (``grafted_binding``)."""
    from safetensors.torch import save_file

    source, target = Path(policy_dir), Path(out)
    weights = grafted_weights(model, policy_dir)
    meta = json.loads((source / "mikasa.json").read_text())
    meta["grafted_binding"] = {"from": "benchmarks/diag_mikasa_binding.py", "variant": model.variant, "steps": steps,
                               "modules": sorted(set(GRAFT.values())), "into": str(source)}
    target.mkdir(parents=True)
    shutil.copy2(source / "config.json", target / "config.json")
    (target / "mikasa.json").write_text(json.dumps(meta, indent=1))
    save_file(weights, str(target / "model.safetensors"))
    print(f"grafted the trained encoder, perceptual memory and readout into a copy of {policy_dir}: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demos", nargs="+", required=True, help="demonstration folders of one task (vla-collect)")
    parser.add_argument("--held", help="a folder of held-out demonstrations (other seeds)")
    parser.add_argument("--train-episodes", type=int, default=900)
    parser.add_argument("--test-episodes", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=["gate", "compare", "query", "cue_token", "oracle"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pointer-loss", type=float, default=0.0)
    parser.add_argument("--shift", type=int, default=4, help="random image shift, px (the policy's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="", help="a name for this run's rows in the results file")
    parser.add_argument("--graft-into", metavar="POLICY",
                        help="after training the gate variant, copy this vla-train policy (8x8 tokens, readout 4) to "
                             "--graft-out with its image encoder, perceptual memory stream and prior readout replaced by "
                             "the trained ones (a warm start for vla-train --init-from)")
    parser.add_argument("--graft-out", metavar="DIR", help="where --graft-into writes the grafted policy")
    args = parser.parse_args()
    if bool(args.graft_into) != bool(args.graft_out) or (args.graft_into and "gate" not in args.variants):
        parser.error("--graft-into needs --graft-out and the gate variant (the policy's own path)")
    if args.graft_out and Path(args.graft_out).exists():
        parser.error(f"--graft-out {args.graft_out} exists: name a new folder")
    from memstream.embodied.policies.memvla.mikasa import load_mikasa_demonstrations

    torch.set_num_threads(args.threads)
    data = load_mikasa_demonstrations(args.demos, max_episodes=args.train_episodes + args.test_episodes)
    everything = samples(data)
    image_px = int(everything["query"].shape[1])
    train = {k: v[: args.train_episodes] for k, v in everything.items()}
    splits = {"train": {k: v[:150] for k, v in train.items()},
              "test": {k: v[args.train_episodes:] for k, v in everything.items()}}
    if args.held:
        splits["held"] = samples(load_mikasa_demonstrations(args.held))
    from memstream.embodied.policies.memvla.mikasa import demonstration_camera

    found = demonstration_camera(args.demos)  # the suite's base camera, recorded or read from the simulator
    cam = (found["intrinsic"], found["extrinsic"])
    mean, std = train["goal"].mean(0), train["goal"].std(0)
    colours = int(everything["colour"].max()) + 1
    if args.graft_into:  # refuse a policy that cannot take the weights before training, not after
        grafted_weights(BindingProbe("gate", image_px, colours), args.graft_into)
    runs = []
    for variant in args.variants:
        torch.manual_seed(args.seed)
        model = BindingProbe(variant, image_px, colours)
        model.cue_index = int(target_tokens(np.zeros((1, 2)), *cam, image_px)[0])  # the cue stands at the table's centre
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        rng = np.random.default_rng(args.seed)
        started, rows = time.perf_counter(), []
        for step in range(1, args.steps + 1):
            pick = torch.as_tensor(rng.choice(args.train_episodes, args.batch, replace=False))
            out = model(train["memory"][pick], train["query"][pick], train["colour"][pick], shift=args.shift)
            loss = (out - (train["goal"][pick] - mean) / std).pow(2).mean()
            if args.pointer_loss and model.pointer is not None:
                cued = target_tokens(train["goal"][pick].numpy(), *cam, image_px)
                loss = loss + args.pointer_loss * nn.functional.nll_loss(model.pointer.clamp_min(1e-8).log(), cued,
                                                                        ignore_index=-1)  # -1: outside the image
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % args.eval_every == 0 or step == args.steps:
                row = {"step": step, "loss": round(float(loss.detach()), 4), "seconds": round(time.perf_counter() - started),
                       **{name: evaluate(model, split, mean, std, cam, image_px) for name, split in splits.items()}}
                print(variant, row, flush=True)
                rows.append(row)
        runs.append({"variant": variant, "pointer_loss": args.pointer_loss, "tag": args.tag, "rows": rows})
        if variant == "gate" and args.graft_into:
            graft(model, args.graft_into, args.graft_out, args.steps)
    print_table(f"{data.task_name}: choice (prediction within {CHOICE_M * 100:.0f} cm of the cued cube) at the last step",
                ["variant", "pointer loss", "steps", *[f"{name} choice" for name in splits], "test error cm"],
                [[r["variant"], r["pointer_loss"], r["rows"][-1]["step"], *[r["rows"][-1][name]["choice"] for name in splits],
                  r["rows"][-1]["test"]["error_cm"]] for r in runs])
    for run in runs:
        run.update(task=data.task_name, args=vars(args))
    key = lambda run: (run["task"], run["variant"], run["pointer_loss"], run["tag"])  # noqa: E731
    path = RESULTS / "mikasa_binding.json"  # runs of other variants or tasks, from earlier invocations, are kept
    earlier = json.loads(path.read_text())["runs"] if path.is_file() else []
    fresh = {key(run) for run in runs}
    save("mikasa_binding", {"runs": [run for run in earlier if key(run) not in fresh] + runs})


if __name__ == "__main__":
    main()
