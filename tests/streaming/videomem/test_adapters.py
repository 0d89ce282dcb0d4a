"""The Video-LLM adapter: un-rotated KV capture, RoPE re-application, frames, loading errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from memstream.streaming.videomem.adapters import cache_kwargs, VideoModelError, load_video_llm
from memstream.streaming.videomem.adapters.context import context_cache, keep_new_tokens


def _full_forward(llm, embeds, positions):
    cache = DynamicCache(config=llm.decoder.config)
    out = llm.decoder(inputs_embeds=embeds[None], position_ids=positions[0][None], use_cache=True, **cache_kwargs(llm.decoder, cache))
    return out.last_hidden_state[0], cache


def test_rotating_captured_keys_gives_the_models_cached_keys_bit_for_bit(tiny_llava):
    llm = tiny_llava
    embeds = torch.randn(12, llm.spec.hidden_size)
    positions, _ = llm.text_positions(1000, 12)  # far from 0: RoPE angles are large
    _, cache = _full_forward(llm, embeds, positions)
    out = llm.run(embeds, positions, context_cache([None] * llm.spec.n_layers), capture_kv=True)
    for layer in range(llm.spec.n_layers):
        assert torch.equal(llm.rotate(out.keys[layer], positions), cache.layers[layer].keys[0])
        assert torch.equal(out.values[layer], cache.layers[layer].values[0])


def test_a_past_rebuilt_from_unrotated_kv_continues_exactly_like_full_attention(tiny_llava):
    llm = tiny_llava
    embeds = torch.randn(20, llm.spec.hidden_size)
    positions, _ = llm.text_positions(0, 20)
    full, _ = _full_forward(llm, embeds, positions)
    keys, values, outputs = [], [], []
    for start in range(0, 20, 5):
        if keys:
            k, v = torch.cat(keys, 2), torch.cat(values, 2)
            rotated = llm.rotate(k, positions[:, :start])
            cache = context_cache([(rotated[i][None], v[i][None]) for i in range(llm.spec.n_layers)])
        else:
            cache = context_cache([None] * llm.spec.n_layers)
        out = llm.run(embeds[start : start + 5], positions[:, start : start + 5], cache, capture_kv=True)
        keys.append(out.keys), values.append(out.values), outputs.append(out.hidden)
    torch.testing.assert_close(torch.cat(outputs), full, rtol=0, atol=1e-5)


def test_lazy_past_is_fetched_once_per_layer_after_that_layers_query(tiny_llava):
    llm = tiny_llava
    n_layers = llm.spec.n_layers
    past = llm.run(torch.randn(6, llm.spec.hidden_size), llm.text_positions(0, 6)[0], context_cache([None] * n_layers), capture_kv=True)
    calls = []

    def fetcher(layer):
        def fetch():
            calls.append((layer, llm.query_mean(layer).shape))
            return llm.rotate(past.keys[layer], llm.text_positions(0, 6)[0])[None], past.values[layer][None]

        return fetch

    cache = context_cache([None] * n_layers, fetchers=[fetcher(i) for i in range(n_layers)], pending_length=6, keep_new=False)
    assert cache.get_seq_length() == 6  # the mask is built before any layer fetches
    question = torch.randn(3, llm.spec.hidden_size)
    lazy = llm.run(question, llm.text_positions(6, 3)[0], cache, capture_query=True)
    assert calls == [(i, (llm.spec.n_kv_heads * llm.spec.head_dim,)) for i in range(n_layers)]
    assert cache.get_seq_length() == 6  # the question was not kept
    eager = context_cache([(llm.rotate(past.keys[i], llm.text_positions(0, 6)[0])[None], past.values[i][None]) for i in range(n_layers)])
    torch.testing.assert_close(lazy.hidden, llm.run(question, llm.text_positions(6, 3)[0], eager).hidden, rtol=0, atol=0)
    keep_new_tokens(cache)
    llm.run(question[:1], llm.text_positions(6, 1)[0], cache)
    assert cache.get_seq_length() == 7


def test_query_mean_is_the_group_summed_mean_of_unrotated_queries(tiny_llava):
    llm = tiny_llava
    spec = llm.spec
    x = torch.randn(5, spec.hidden_size)
    seen = {}
    handle = llm.decoder.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.setdefault("q", o[0]))
    try:
        fetch_result = {}

        def fetch():
            fetch_result["q"] = llm.query_mean(0)
            return torch.zeros(1, spec.n_kv_heads, 0, spec.head_dim), torch.zeros(1, spec.n_kv_heads, 0, spec.head_dim)

        cache = context_cache([None] * spec.n_layers, fetchers=[fetch] + [None] * (spec.n_layers - 1), pending_length=0)
        llm.run(x, llm.text_positions(0, 5)[0], cache, capture_query=True)
    finally:
        handle.remove()
    q = seen["q"].view(5, spec.n_kv_heads, spec.group_size, spec.head_dim).mean(0).sum(1).reshape(-1)
    torch.testing.assert_close(fetch_result["q"], q)


def test_frames_become_pooled_tokens_as_in_get_video_features(tiny_llava):
    llm = tiny_llava
    frames = [np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8) for i in range(3)]
    embeds = llm.embed_frames(frames)
    assert embeds.shape == (3, 4, llm.spec.hidden_size)  # (32 px / 8 px patches / 2x2 pooling)^2
    one = llm.embed_frames(frames[1:2])
    torch.testing.assert_close(one[0], embeds[1], rtol=0, atol=1e-5)  # frames are encoded independently


def test_delta_rotating_rotated_keys_is_close_but_storing_before_rotation_is_exact(tiny_llava):
    """ReKV stores keys before RoPE; the alternative re-rotates cached (rotated) keys by the position
    change. Both are rotations; in bf16 only storing un-rotated keys reproduces the model's cache."""
    llm = tiny_llava
    keys = torch.randn(llm.spec.n_kv_heads, 16, llm.spec.head_dim).to(torch.bfloat16)
    old, _ = llm.text_positions(5000, 16)
    new, _ = llm.text_positions(40, 16)
    target = llm.rotate(keys, new)
    delta = llm.rotate(llm.rotate(keys, old), new - old)  # RoPE rotations compose: R(b-a) R(a) = R(b)
    assert torch.equal(llm.rotate(keys, new), target)
    error = (delta.float() - target.float()).abs().max().item()
    assert 0 < error < 0.1 * keys.float().abs().max().item()


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(VideoModelError, match="cannot load model 'no-such-org/no-such-model'") as err:
        load_video_llm("no-such-org/no-such-model")  # a hub id (the suite is offline)
    assert "local directory" in str(err.value)


def test_a_model_path_that_does_not_exist_fails_before_the_hub_is_asked(tmp_path, monkeypatch):
    import transformers

    def hub(*args, **kwargs):
        raise AssertionError("the hub was asked about a local path")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", hub)
    missing = tmp_path / "nowhere"
    with pytest.raises(VideoModelError) as err:
        load_video_llm(str(missing))
    assert err.value.one_line().startswith(f"no such model folder: {missing} ({tmp_path} exists, 'nowhere' is not in it). ")
    assert "save_pretrained" in err.value.one_line() and "\n" not in err.value.one_line()


def test_a_text_only_model_is_refused_for_having_no_vision_tower(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(VideoModelError, match="no vision tower"):
        load_video_llm(str(tmp_path))


def test_a_checkpoint_that_does_not_match_its_config_is_refused(tiny_llava_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llava_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["hidden_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(VideoModelError, match="do not match|cannot load the weights"):
        load_video_llm(str(broken))


def test_fingerprint_tells_weights_apart(tiny_llava_dir, tmp_path):
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    other = build_tiny_llava_onevision(tmp_path / "other", seed=1)
    a = load_video_llm(str(tiny_llava_dir), device="cpu")
    b = load_video_llm(str(other), device="cpu")
    assert a.spec.fingerprint != b.spec.fingerprint
    assert a.spec.fingerprint == load_video_llm(str(tiny_llava_dir), device="cpu").spec.fingerprint


def test_the_cache_goes_under_the_keyword_the_model_takes(tiny_llava) -> None:
    """transformers 5.25 renamed ``past_key_values`` to ``cache`` behind a deprecation shim; older
    releases take only ``past_key_values``. The keyword is read from ``forward``'s signature."""
    import warnings

    from transformers.utils.deprecation import deprecate_kwarg

    from memstream.streaming.videomem.adapters import cache_keyword

    class Old(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None):
            return past_key_values

    class New(torch.nn.Module):
        @deprecate_kwarg("past_key_values", "99.0.0", new_name="cache")
        def forward(self, inputs_embeds=None, cache=None, use_cache=None):
            return cache

    class KwargsOnly(torch.nn.Module):
        def forward(self, inputs_embeds=None, **kwargs):
            return kwargs.get("past_key_values")

    marker = object()
    assert [cache_keyword(m) for m in (Old(), New(), KwargsOnly())] == ["past_key_values", "cache", "past_key_values"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the new name never meets the shim's warning
        assert all(m(**cache_kwargs(m, marker)) is marker for m in (Old(), New(), KwargsOnly()))
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) >= Version("5.25.0"):
        assert cache_keyword(tiny_llava.decoder) == "cache"
