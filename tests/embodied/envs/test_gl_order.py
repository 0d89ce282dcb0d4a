"""Mesa's LLVM and triton's in one process (memstream.embodied.envs.gl): after a simulator has
rendered, torch._dynamo (which AdamW and torch.compile import, and with it triton) still loads."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest


def test_triton_loads_after_miniworld_has_rendered():
    for name in ("miniworld", "triton"):  # found, not imported: miniworld opens a display when imported bare
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    script = textwrap.dedent("""
        from memstream.embodied.envs.nav import make_nav_env
        env = make_nav_env("miniworld", "cue", {})
        assert env.reset(0)["rgb"].shape == (64, 64, 3)
        import torch._dynamo, torch
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the compiled triton, as users load it
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.returncode, done.stderr[-2000:])
