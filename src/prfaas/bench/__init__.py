"""prfaas.bench: two-datacenter emulation, the live benchmark and fault injection (see docs/structure.md).

    netns.py      ip/tc wrappers, setns(2) `entered(ns)` for the calling thread, namespace teardown
    sites.py      two emulated sites ("prfaas", "local"): namespaces + veth + tbf cap, `set_cap_mbit`, teardown
    deploy.py     a serve config placed on the sites; BenchLauncher (site prefixes, restart, fault nodes)
    fault_node.py a node process whose KV sender corrupts chunks (EMULATION, `bench chaos`)
    workload.py   the paper's log-normal or a trace, scaled to the small model, as token prompts
    loadgen.py    aiohttp streaming client: arrivals, bounded concurrency, TTFT/TPOT from SSE, statuses
    linkmon.py    link samples over time (sender counters via the gateway, qdisc bytes on the sites)
    records.py    RequestRecord / LinkSample and their JSONL files
    summary.py    throughput, goodput under SLO, TTFT/TPOT percentiles, routes, link utilisation
    plots.py      TTFT CDF, link over time with the cap line, live vs simulator
    choices.py    command-line choices -> config, sites, workload, load options (cap from the regime)
    regime.py     scaling the paper's regime (13 % egress utilisation) to the small model; bench configs
    run.py        one run: deployment (+ sites), measure, write records/summary/plots
    predict.py    the simulator replaying the exact live requests (same costs, policy, cap)
    compare.py    the same workload under each policy, beside the simulator's and planner's predictions
    chaos.py      faults: link cap drop, PrfaaS kill/restart, PD-D kill, corrupted chunks, gateway restart

The CLI is `prfaas bench sites up|down`, `prfaas bench run`, `prfaas bench compare`, `prfaas bench chaos`.
"""
