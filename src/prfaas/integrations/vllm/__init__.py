"""prfaas on vLLM: a KV connector vLLM loads by module path, and the pieces the gateway shares with it.

    vllm serve ... --kv-transfer-config '{"kv_connector": "PrfaasConnector",
        "kv_connector_module_path": "prfaas.integrations.vllm.connector", "kv_role": "kv_both",
        "kv_connector_extra_config": {"kv_port": 7801, "secret_file": "/run/prfaas/secret"}}'

`connector` (imports vllm and torch) runs inside vLLM's processes; `params` (pure) is the request-level contract
the gateway writes into `kv_transfer_params`; `venv` builds the isolated environment vLLM runs in. Nothing here
imports `serve` or `policy`: the connector only moves state through `prfaas.transport`.
"""
