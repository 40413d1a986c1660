"""prfaas.engine: real model execution for PrfaaS (torch + transformers).

Modules, one concept each:

    geometry, families, spec   per-layer state geometry and `LayerStateSpec`s from a HF config (pure, no torch)
    state                      `HybridState`: per-layer parts, layout, zero-copy views, receive buffers
    cache_io, batch_cache      HybridState <-> transformers caches (one request; a left-padded batch)
    models, default_model,     loading: embedded default hybrid, SmolLM2 (real weights), local checkpoints,
    smollm2, tiny, tokenizer   tiny random configs of every family, the shipped tokenizer
    prefill                    `PrefillEngine.prefill(tokens, prefix, on_layer_done) -> (first_token, state)`
    decode, sampling, masks    `DecodeWorker`: continuous batching, greedy/sampled decoding, stop conditions
    prefix_ledger, prefix_pool hybrid prefix cache pool: pure bookkeeping + tensor storage + caching prefill
    profiling                  T_prefill(l), S_kv(l), decode step times for `prfaas profile`
    errors                     `EngineError` hierarchy

Importing this package imports nothing heavy; the modules that need torch import it themselves.
"""
