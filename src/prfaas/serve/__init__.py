"""prfaas.serve: the live PrfaaS-PD system (gateway, PrfaaS prefill nodes, PD nodes, launcher).

    config.py        DeployConfig: the one typed config tree (TOML / resolved config.json), embedded default
    messages.py      control-plane messages (msgspec Structs with a type tag and a version), encode/decode
    backend.py       what a node's model thread runs: Backend protocol, StubBackend (no torch)
    torch_backend.py TorchBackend: engine prefill (prefix cache pool, layer hooks) + continuous-batching decode
    worker.py        ModelWorker: the one thread per node that touches the model
    inbox.py         StateInbox: arrived prompt states waiting for their decode admission
    node.py          NodeServer: /prefill (layer-wise KV streaming), /decode (NDJSON tokens), /role, /abort,
                     register + heartbeats
    cluster.py       NodeRegistry: registrations, heartbeats, liveness, ClusterView snapshots, link merging
    control.py       ControlPlane: router (policy registry), KV index, rebalancer loop, drain-then-switch
    driver.py        RequestDriver: route -> prefill -> outcome -> decode stream, failure policy
    openai_api.py    OpenAI request schemas, validation and error bodies, response encoders
    text.py          tokenizer loading, chat rendering, incremental detokenization with stop strings
    metrics.py       Prometheus metrics of the gateway
    gateway.py       the FastAPI app: /v1/*, /health, /metrics, /admin/*, /internal/*
    signing.py       control-plane request/reply signatures (HMAC, timestamp window, nonce cache; pure)
    control_auth.py  aiohttp glue: signing client middleware, verifying server middleware, refusal recorder
    gateway_auth.py  the gateway's bearer checks (/admin token, /v1 API keys, /metrics) and /internal checks
    deploy_secrets.py  secrets read from files / environment at start; per-run 0600 secret files (prfaas up)
    launcher.py      Launcher: a whole deployment as child processes (prfaas up)
    main.py          process entry points (python -m prfaas.serve.main gateway|node)
    predict.py, demo.py   prfaas demo: live workload + simulator/planner predictions from the live profile

Processes talk JSON over HTTP (aiohttp inside, FastAPI/uvicorn for the public API); prompt state moves over
`prfaas.transport` (TCP, layer by layer). Routing is always `prfaas.policy` (the same objects the simulator runs).
"""
