"""Video KV memory (ReKV, Flash-VStream) and Video-LLM adapters."""
