"""prfaas.policy: the global scheduler, pure (no clock, sockets, threads, asyncio or torch).

    types.py            shared plain data: RequestInfo, InstanceView, ClusterView, RoutePlan, Outcome,
                        WindowStats, RebalancePlan, reason/failure enums, Router/Rebalancer protocols
    registry.py         make_router(name, config, kv_index=, state_bytes=, prefill_time_s=), list_routers()
    config.py           PolicyConfig: the policy's config tree (narrowed per component)
    routers/            one module per policy: homogeneous, naive_offload, prfaas, bandwidth_aware,
                        cache_aware (+ base: forced routes, node choice, pending bookkeeping)
    kv_index.py         GlobalKvIndex: per-node LRU of 512-token prefix blocks, longest-prefix lookups
    node_select.py      prefill node by cache affinity and load; decode node by occupancy and memory
                        (from load-ranked candidates, ClusterView.ranked: O(hits + 1) per choice)
    bandwidth_aware.py  short-term loop: threshold raise sized to fit the measured link, PD-P queue as
                        counter-signal, hysteresis
    offload_demand.py   offered egress bytes per candidate threshold, from recently routed lengths
    cache_regime.py     bandwidth-scarce vs -abundant regime for prefix-aware routing (+ CacheAwareConfig:
                        minimum transfer benefit, PD-P headroom for pulls)
    failures.py         failure kind -> FailureAction
    rebalancer.py       long-term loop: PD-P <-> PD-D conversions and threshold re-optimisation
    planner_adapter.py  the real planner as the rebalancer's injected `reoptimise`
"""
