"""The deployment's one typed config tree (STYLE.md §5): model, gateway, transport, nodes, links, policy, SLOs.

    cfg = load_config("deploy.toml")        # TOML (or a resolved config.json); ConfigError names key and line
    cfg = default_config()                  # the embedded default: one PrfaaS node, one PD-P, one PD-D, localhost
    cfg = check_config(cfg, "prfaas up")    # re-validate after code changed it (CLI overrides), before any process
    cfg = resolve_ports(cfg)                # every port 0 replaced by a free loopback port (launcher only)
    write_resolved(cfg, run_dir)            # run_dir/config.json, what every run records (no secret in it)

Validation checks values only (no sockets, no files written). Secrets are references here (a file or an
environment variable, read at process start by `serve.deploy_secrets`); beyond loopback nothing else is
accepted. Components get their own section:
nodes their `NodeSection`, the gateway its `GatewaySection` plus the node list, the policy a `PolicyConfig`
built by `policy_config`.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from prfaas.catalog.tomlfile import TomlDoc, convert, parse_toml, read_toml
from prfaas.core.errors import ConfigError, PrfaasError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.topology import SiteTopology
from prfaas.policy.config import PolicyConfig
from prfaas.policy.overrides import POLICY_SUBCONFIGS, PolicyOverrideError, apply_policy_overrides
from prfaas.policy.registry import list_routers
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID
from prfaas.transport.ports import free_ports

Pos = Annotated[float, Meta(gt=0)]
NonNeg = Annotated[float, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]

MIN_SECRET_CHARS = 16
EMBEDDED_THRESHOLD_TOKENS = 1024
"""The embedded default's offload threshold: the small model's analogue of the paper's t = 19.4K (its
context is 16K tokens, so the paper's t would never offload)."""


class EngineKind(enum.Enum):
    """`model.engine`: what computes on the nodes. "model": our engine runs `model.name` (or the torch-free stub
    when the name is "stub"); "emulated": no model, the time an accelerator's profile says and exactly S_kv(l)
    real bytes (`serve.emulated_backend`, docs/emulated.md)."""

    MODEL = "model"
    EMULATED = "emulated"


class EmulatedSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`[model.emulated]`: the emulated accelerators (used when `model.engine = "emulated"`). A profile is a
    named one ("paper-h200": Table 5 on 8 x H200; "paper-h20": the planner's H20 profile derived from it) or the
    path of a `prfaas profile` JSON. The state geometry is fitted to the PrfaaS profile's S_kv points."""

    prfaas_profile: str = "paper-h200"  # prefill time of PrfaaS-cluster nodes
    pd_profile: str = "paper-h20"  # prefill time of PD-cluster nodes
    t_decode_s: Pos = 0.025  # one decode step of the batch (unscaled; the paper's 1 / 40 tokens/s)
    time_scale: Pos = 1.0  # k_t: every duration x k_t (link capacities / k_t: set them in [[links]])
    state_scale: Annotated[float, Meta(ge=1.0)] = 1.0  # k_b: every state byte / k_b (links / k_b as well)
    num_layers: Annotated[int, Meta(ge=2, le=1024)] = 64
    linear_per_full: Annotated[int, Meta(ge=1, le=64)] = 3  # KDA layers per MLA layer
    steps_per_event: Annotated[int, Meta(ge=1, le=64)] = 1  # decode steps slept and emitted together
    max_context_tokens: Annotated[int, Meta(ge=1024)] = 262144


class ModelSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Which model every node loads (all nodes of a deployment run the same model)."""

    engine: EngineKind = EngineKind.MODEL
    emulated: EmulatedSection = EmulatedSection()

    name: str = "default"  # default | smollm2 | path to a checkpoint folder | stub (benchmarks only)
    served_name: str = "default"  # the OpenAI `model` name clients use
    num_layers: Annotated[int, Meta(ge=4)] = 8  # default model only (multiple of 4)
    hidden_size: Annotated[int, Meta(ge=128)] = 512  # default model only (multiple of 128)
    seed: int = 0
    dtype: str | None = None
    num_threads: Annotated[int, Meta(ge=1)] | None = 1  # torch threads per node process (None: torch default)
    max_batch_size: Annotated[int, Meta(ge=1)] = 32
    prefix_cache_bytes: Annotated[int, Meta(ge=0)] = 256 * 1024 * 1024  # per prefill node; 0 disables it
    stub_step_s: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.0  # stub model only: seconds per decode step (tests)


class GatewaySection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    heartbeat_interval_s: Pos = 0.5  # nodes send a heartbeat this often
    heartbeat_timeout_s: Pos = 3.0  # a node silent this long is taken out of routing
    request_timeout_s: Pos = 300.0  # one node call (a prefill; a decode stream's longest silence)
    request_deadline_s: Pos | None = None  # a request still running after this long is cancelled (None: no limit)
    route_wait_s: Pos = 60.0  # how long a request waits for a route while roles convert or nodes first register
    rebalance_interval_s: Pos = 10.0
    allow_debug_hooks: bool = False  # honour x-prfaas-debug-stall-s (tests only)
    request_log: str | None = None  # JSONL of finished requests, reloaded on restart (`prfaas up`: in its run dir)
    # /admin/* needs `Authorization: Bearer TOKEN`; without a token they answer 403 (`prfaas up` makes one per run)
    admin_token_file: str | None = None  # a file holding the token (mode 0600)
    admin_token_env: str | None = None  # or the name of an environment variable holding it
    # optional API keys for /v1/* (`Authorization: Bearer KEY`); with none the public API is open
    api_keys_file: str | None = None  # one key per line ('#' starts a comment)
    api_keys_env: str | None = None  # the name of an environment variable holding keys, comma-separated
    metrics_need_admin_token: bool = False  # True: /metrics needs the admin token as well
    region: str | None = None  # with [topology]: the PD region this gateway serves (serve.sites)


class AdmissionSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`[admission]`: load shedding at the gateway (`serve.admission`, docs/admission.md). Beyond a bound a request
    is refused at once (429, or 503 when no node can serve at all) with `Retry-After`, never queued. The defaults
    are sized for the embedded default (the small default model, one prefill node per cluster) on 2 shared cores,
    where a prefill node clears about 1-2K prompt tokens/s under load: a full node queue is under 10 s of work,
    well inside the queue deadline."""

    max_in_flight: Annotated[int, Meta(ge=1)] = 64  # requests admitted and not finished, gateway-wide
    node_max_queued_requests: Annotated[int, Meta(ge=1)] = 8  # prefills queued or in flight on one node
    node_max_queued_tokens: Annotated[int, Meta(ge=1)] = 12288  # their prompt tokens
    queue_deadline_s: Pos = 30.0  # a prefill not started this long after admission is shed (503), never kept
    retry_after_s: Annotated[int, Meta(ge=1)] = 1  # the `Retry-After` a refused client gets (seconds)


class TlsMode(enum.Enum):
    """`transport.tls`: "on" (the default) encrypts every KV link with mutual TLS; "off" is for links the
    operator already encrypts (nodes log a warning). docs/security-tls.md."""

    ON = "on"
    OFF = "off"


class TransportSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`shared_secret*`: the deployment secret (KV transport handshake and, derived from it, the control plane's
    request signatures). Exactly one source; none has a default. Beyond loopback only a file or an environment
    variable is accepted; `prfaas up` writes a fresh one per run into its run dir (mode 0600)."""

    shared_secret_file: str | None = None  # a file holding the secret (mode 0600; surrounding whitespace ignored)
    shared_secret_env: str | None = None  # the name of an environment variable holding it
    shared_secret: Annotated[str, Meta(min_length=MIN_SECRET_CHARS)] | None = None  # inline: loopback-only dev
    connections_per_peer: Annotated[int, Meta(ge=1, le=64)] = 2
    chunk_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    transfer_deadline_s: Pos = 60.0
    memory_budget_bytes: Annotated[int, Meta(gt=0)] = 4 * 1024**3
    # -- TLS of the KV links (serve.tls_setup, docs/security-tls.md) --
    tls: TlsMode = TlsMode.ON
    tls_ca_file: str | None = None  # the deployment CA, the only trust root; None: `prfaas up` makes a dev CA
    tls_cert_file: str | None = None  # this node's certificate; `{node}` is replaced by the node's name
    tls_key_file: str | None = None  # its private key (mode 0600); `{node}` as above


class NodeSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    cluster: ClusterKind
    role: Role
    host: str = "127.0.0.1"
    port: Port = 0  # control (HTTP) port; 0 = pick a free one
    kv_port: Port = 0  # KV receiver port (PD nodes); 0 = pick a free one. engine "vllm": the connector's receiver
    # -- engine "vllm": this node is an adapter process in front of one vLLM instance (docs/vllm.md) --
    engine: str = "prfaas"  # "prfaas" (our engine, in this process) | "vllm" (`serve.vllm_node`)
    vllm_url: str | None = None  # the instance's OpenAI server, e.g. http://127.0.0.1:8100
    kv_host: str | None = None  # where the instance's prfaas connector receives state (None: `host`)
    telemetry_url: str | None = None  # the connector's telemetry endpoint (GET /prfaas/telemetry), e.g. http://h:p
    kv_events_endpoint: str | None = None  # vLLM's --kv-events-config endpoint (prefix-cache contents), or None
    vllm_model: str | None = None  # the `model` name of OpenAI calls (None: the first of GET /v1/models)
    # the served architecture (a catalog model name or TOML path, or the checkpoint folder vLLM serves): S_kv(l) for
    # the policy and the transfer bytes of offloaded prefills
    state_bytes_model: str | None = None
    # vLLM's `--api-key`, sent as `Authorization: Bearer` on every call (a file, mode 0600, or an environment variable)
    vllm_api_key_file: str | None = None
    vllm_api_key_env: str | None = None
    # prompt tokens of the prefills inside vLLM at once; the rest wait at the adapter in the regions' fair order
    # (`serve.vllm_turns`; None: its default, 16,384; 0: no gate, vLLM's own first-come order)
    vllm_prefill_tokens: Annotated[int, Meta(ge=0)] | None = None
    site: str | None = None  # with [topology]: this node's cluster (a PrfaaS cluster or a PD region), else unset


class LinkSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The PrfaaS -> PD egress. `capacity_gbps` paces the PrfaaS senders (None: unpaced, utilisation unknown);
    the default is about what loopback carries on a small machine. `one_way_delay_s` is emulation only."""

    id: str = PRFAAS_EGRESS_LINK_ID
    capacity_gbps: Pos | None = 10.0
    one_way_delay_s: NonNeg = 0.0


class PolicySection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = "prfaas"
    threshold_tokens: Annotated[int, Meta(ge=0)] | None = EMBEDDED_THRESHOLD_TOKENS
    rebalance: bool = True
    # a `prfaas profile` output: the rebalancer's planner re-optimises t with it (serve.replan); None: it does not
    profile: str | None = None
    bandwidth: dict[str, Any] = msgspec.field(default_factory=dict)
    cache: dict[str, Any] = msgspec.field(default_factory=dict)
    rebalancer: dict[str, Any] = msgspec.field(default_factory=dict)
    node_select: dict[str, Any] = msgspec.field(default_factory=dict)
    failure: dict[str, Any] = msgspec.field(default_factory=dict)
    site_selector: str = "prfaas-sites"  # with [topology]: which PrfaaS cluster takes an offload (policy.site_registry)
    # a node pauses a prefill between layers for another region's whose fair turn comes first (serve.worker)
    prefill_preemption: bool = True


class SloSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ttft_s: Pos | None = None
    tpot_s: Pos | None = None


class BudgetSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per-node budgets of what requests hold while they wait (`serve.budgets`); beyond one a node refuses (503)."""

    queued_prompt_tokens: Annotated[int, Meta(gt=0)] = 4_000_000  # prompts accepted for prefill, not yet done
    waiting_state_bytes: Annotated[int, Meta(gt=0)] = 8 * 1024**3  # states kept or arrived, not yet decoding


class RegionGatewaySection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`[[gateways]]` (with [topology]): one gateway per PD region; `[gateway]` holds their common settings."""

    region: str
    host: str = "127.0.0.1"
    port: Port = 0


class DeployConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole deployment (written resolved to config.json next to each run's logs)."""

    model: ModelSection = msgspec.field(default_factory=ModelSection)
    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    admission: AdmissionSection = msgspec.field(default_factory=AdmissionSection)
    transport: TransportSection = msgspec.field(default_factory=TransportSection)
    nodes: list[NodeSection] = msgspec.field(default_factory=list)
    links: list[LinkSection] = msgspec.field(default_factory=list)
    policy: PolicySection = msgspec.field(default_factory=PolicySection)
    slo: SloSection = msgspec.field(default_factory=SloSection)
    budgets: BudgetSection = msgspec.field(default_factory=BudgetSection)
    # many sites (serve.sites): the clusters and links, and one gateway per PD region; None/[]: today's deployment
    topology: SiteTopology | None = None
    gateways: list[RegionGatewaySection] = msgspec.field(default_factory=list)

    def node(self, name: str) -> NodeSection:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ConfigError(f"unknown node {name!r}; known: {', '.join(n.name for n in self.nodes)}")

    def egress_link(self) -> LinkSection:
        for link in self.links:
            if link.id == PRFAAS_EGRESS_LINK_ID:
                return link
        return LinkSection()


_ROLES_BY_CLUSTER = {
    ClusterKind.PRFAAS: (Role.PRFAAS_PREFILL,),
    ClusterKind.PD: (Role.PD_PREFILL, Role.PD_DECODE),
}


def default_nodes() -> list[NodeSection]:
    return [
        NodeSection(name="prfaas-0", cluster=ClusterKind.PRFAAS, role=Role.PRFAAS_PREFILL),
        NodeSection(name="pd-0", cluster=ClusterKind.PD, role=Role.PD_PREFILL),
        NodeSection(name="pd-1", cluster=ClusterKind.PD, role=Role.PD_DECODE),
    ]


def default_config(**sections: Any) -> DeployConfig:
    """The embedded default deployment on localhost (sections override whole tables)."""
    base = DeployConfig(nodes=default_nodes(), links=[LinkSection()])
    cfg = msgspec.structs.replace(base, **sections)
    validate(cfg, None)
    return cfg


def load_config(path: str | Path) -> DeployConfig:
    """Read and validate a deployment file (.toml, or a resolved .json); errors name file, key and line."""
    file_path = Path(path)
    if file_path.suffix == ".json":
        try:
            text = file_path.read_text(encoding="utf-8")
            doc = parse_toml("", str(file_path))
            cfg = convert(json.loads(text), DeployConfig, doc)
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config: {exc}", path=str(file_path)) from None
    else:
        doc = read_toml(file_path)
        raw = dict(doc.data)
        cfg = convert(raw, DeployConfig, doc)
        if "nodes" not in raw:
            cfg = msgspec.structs.replace(cfg, nodes=default_nodes())
    validate(cfg, doc)
    return cfg


def check_config(cfg: DeployConfig, source: str = "config") -> DeployConfig:
    """Validate a config built or changed in code (`msgspec.structs.replace` skips validation) exactly as each
    process will when it reads the resolved config.json: the schema's bounds, then `validate`. Returns it checked;
    errors read `<source>: gateway.port: Expected `int` <= 65535, got 80000`."""
    doc = parse_toml("", source)
    checked = convert(json.loads(config_to_json(cfg)), DeployConfig, doc)
    validate(checked, doc)
    return checked


def _err(doc: TomlDoc | None, key: str, message: str) -> ConfigError:
    return doc.error(key, message) if doc is not None else ConfigError(f"{key}: {message}")


def validate(cfg: DeployConfig, doc: TomlDoc | None) -> None:
    """Cross-field checks the schema cannot express."""
    if cfg.policy.name not in list_routers():
        raise _err(doc, "policy.name", f"unknown policy {cfg.policy.name!r}; known: {', '.join(list_routers())}")
    policy_config(cfg, doc)
    names = [n.name for n in cfg.nodes]
    for i, node in enumerate(cfg.nodes):
        if names.count(node.name) > 1:
            raise _err(doc, f"nodes[{i}].name", f"duplicate node name {node.name!r}")
        if node.role not in _ROLES_BY_CLUSTER[node.cluster]:
            allowed = ", ".join(r.value for r in _ROLES_BY_CLUSTER[node.cluster])
            raise _err(doc, f"nodes[{i}].role", f"a {node.cluster.value} node's role must be one of: {allowed}")
    for i, node in enumerate(cfg.nodes):
        _validate_engine(node, f"nodes[{i}]", doc)
        if node.engine != cfg.nodes[0].engine:  # the KV state's wire layout is the engine's: they cannot mix
            raise _err(doc, f"nodes[{i}].engine", f"every node of a deployment runs the same engine; nodes[0] runs "
                       f"{cfg.nodes[0].engine!r}, {node.name!r} {node.engine!r}")
    if not any(n.role is Role.PD_DECODE for n in cfg.nodes):
        raise _err(doc, "nodes", "a deployment needs at least one pd_decode node")
    if not any(n.role in (Role.PD_PREFILL, Role.PRFAAS_PREFILL) for n in cfg.nodes):
        raise _err(doc, "nodes", "a deployment needs at least one prefill node")
    _validate_tls(cfg.transport, doc)
    from prfaas.serve.sites import validate_sites  # (imports this module)

    validate_sites(cfg, doc)
    model = cfg.model
    if model.engine is EngineKind.MODEL and model.name == "default" and (model.num_layers % 4
                                                                         or model.hidden_size % 128):
        raise _err(doc, "model.num_layers", "the default model needs num_layers % 4 == 0 and hidden_size % 128 == 0")
    validate_secret_sources(cfg, doc)


ENGINES = ("prfaas", "vllm")
_VLLM_KEYS = ("vllm_url", "kv_host", "telemetry_url", "kv_events_endpoint", "vllm_model", "state_bytes_model",
              "vllm_api_key_file", "vllm_api_key_env", "vllm_prefill_tokens")


def _http_url_error(url: str) -> str | None:
    """Why `url` is not an http(s)://host:port[/path] base URL (None: it is one)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s)://host:port URL"
    if port is None:
        return f"{url!r} names no port"
    if parts.query or parts.fragment:
        return f"{url!r} must not carry a query or fragment"
    return None


def _validate_engine(node: NodeSection, key: str, doc: TomlDoc | None) -> None:
    if node.engine not in ENGINES:
        raise _err(doc, f"{key}.engine", f"unknown engine {node.engine!r}; known: {', '.join(ENGINES)}")
    if node.engine == "prfaas":
        stray = [k for k in _VLLM_KEYS if getattr(node, k) is not None]
        if stray:
            raise _err(doc, f"{key}.{stray[0]}", f"{stray[0]} is for engine = \"vllm\" nodes only")
        return
    if node.vllm_url is None:
        raise _err(doc, f"{key}.vllm_url", "an engine = \"vllm\" node needs vllm_url (its vLLM server)")
    for name in ("vllm_url", "telemetry_url"):
        value = getattr(node, name)
        problem = None if value is None else _http_url_error(value)
        if problem is not None:
            raise _err(doc, f"{key}.{name}", problem)
    if node.vllm_api_key_file is not None and node.vllm_api_key_env is not None:
        raise _err(doc, f"{key}.vllm_api_key_env", "give one of vllm_api_key_file, vllm_api_key_env, not both")
    if node.kv_port == 0:
        raise _err(doc, f"{key}.kv_port", "an engine = \"vllm\" node needs kv_port: the port its prfaas connector "
                   "receives state on (kv_transfer_config's kv_port)")
    if node.state_bytes_model is not None:
        from prfaas.serve.vllm_arch import served_arch

        try:
            served_arch(node.state_bytes_model)
        except PrfaasError as exc:
            raise _err(doc, f"{key}.state_bytes_model", str(exc)) from None
    endpoint = node.kv_events_endpoint
    if endpoint is not None and not _is_kv_events_endpoint(endpoint):
        raise _err(doc, f"{key}.kv_events_endpoint", f"{endpoint!r} is not tcp://HOST:PORT or tcp://*:PORT "
                   "(the endpoint given to vllm serve --kv-events-config)")


def _is_kv_events_endpoint(endpoint: str) -> bool:
    if not endpoint.startswith("tcp://"):
        return False
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_loopback_host(host: str) -> bool:
    """True when `host` only listens on this machine (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that is not "localhost" may resolve to anything


def beyond_loopback(cfg: DeployConfig) -> list[str]:
    """Which listeners of the deployment are reachable from other machines (empty: loopback only)."""
    hosts = [("gateway", cfg.gateway.host)] + [(f"node {n.name}", n.host) for n in cfg.nodes]
    hosts += [(f"gateway of {g.region}", g.host) for g in cfg.gateways]
    hosts += [(f"node {n.name}'s KV receiver", n.kv_host) for n in cfg.nodes if n.kv_host is not None]
    return [f"{who} on {host}" for who, host in hosts if not is_loopback_host(host)]


def validate_secret_sources(cfg: DeployConfig, doc: TomlDoc | None) -> None:
    """At most one source per secret; beyond loopback the deployment secret must come from a file or the
    environment (an inline secret would live in a config file that is copied around and often world-readable)."""
    t, g = cfg.transport, cfg.gateway
    sources = [k for k, v in (("shared_secret", t.shared_secret), ("shared_secret_file", t.shared_secret_file),
                              ("shared_secret_env", t.shared_secret_env)) if v is not None]
    if len(sources) > 1:
        raise _err(doc, f"transport.{sources[1]}", f"give one of {', '.join(sources)}, not several")
    for key, a, b in (("admin_token", g.admin_token_file, g.admin_token_env),
                      ("api_keys", g.api_keys_file, g.api_keys_env)):
        if a is not None and b is not None:
            raise _err(doc, f"gateway.{key}_env", f"give one of {key}_file, {key}_env, not both")
    exposed = beyond_loopback(cfg)
    if not exposed:
        return
    if t.shared_secret is not None:
        raise _err(doc, "transport.shared_secret", f"an inline secret is for loopback only ({exposed[0]}); use "
                   "shared_secret_file (mode 0600) or shared_secret_env")
    if t.shared_secret_file is None and t.shared_secret_env is None:
        raise _err(doc, "transport", f"{exposed[0]} listens beyond loopback: set [transport] shared_secret_file "
                   "(mode 0600) or shared_secret_env")


def _validate_tls(t: TransportSection, doc: TomlDoc | None) -> None:
    files = {"tls_ca_file": t.tls_ca_file, "tls_cert_file": t.tls_cert_file, "tls_key_file": t.tls_key_file}
    unset = [k for k, v in files.items() if v is None]
    if unset and len(unset) < len(files):
        raise _err(doc, f"transport.{unset[0]}", "set tls_ca_file, tls_cert_file and tls_key_file together "
                   "(or none of them: `prfaas up` then makes a dev CA per run)")


def policy_config(cfg: DeployConfig, doc: TomlDoc | None = None) -> PolicyConfig:
    """The policy's own config tree with the file's overrides applied (validated by its dataclasses)."""
    tables = {name: getattr(cfg.policy, name) for name in POLICY_SUBCONFIGS}
    try:
        return apply_policy_overrides(tables, cfg.policy.threshold_tokens)
    except PolicyOverrideError as exc:
        raise _err(doc, exc.key, str(exc)) from None


def resolve_ports(cfg: DeployConfig) -> DeployConfig:
    """Replace every port 0 (gateway, node control, node KV) with a free port on that host, all distinct and none
    equal to a port the config fixes on that host (the OS may hand out a fixed port that nothing has bound yet,
    e.g. one a caller probed with `free_port` and released: the gateway and a node would then collide)."""
    wanted: dict[str, int] = {}
    fixed: dict[str, set[int]] = {}

    def want(host: str, port: int | None) -> None:
        if not port:
            wanted[host] = wanted.get(host, 0) + 1
        else:
            fixed.setdefault(host, set()).add(port)

    want(cfg.gateway.host, cfg.gateway.port)
    for n in cfg.nodes:
        want(n.host, n.port)
        want(n.host, n.kv_port)
    for g in cfg.gateways:
        want(g.host, g.port)
    pools = {}
    for host, count in wanted.items():
        taken = fixed.get(host, set())
        pools[host] = [port for port in free_ports(host, count + len(taken)) if port not in taken][:count]

    def take(host: str, port: int | None) -> int:
        return port or pools[host].pop()

    gateway = cfg.gateway
    if gateway.port == 0:
        gateway = msgspec.structs.replace(gateway, port=take(gateway.host, 0))
    nodes = [msgspec.structs.replace(n, port=take(n.host, n.port), kv_port=take(n.host, n.kv_port))
             for n in cfg.nodes]  # (a vLLM node's kv_port is never 0: its connector's, validated)
    gateways = [msgspec.structs.replace(g, port=take(g.host, g.port)) for g in cfg.gateways]
    return msgspec.structs.replace(cfg, gateway=gateway, nodes=nodes, gateways=gateways)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"cannot encode {type(obj).__name__}")


def config_to_json(cfg: DeployConfig) -> str:
    return json.dumps(msgspec.to_builtins(cfg), indent=2, default=_json_default)


def without_inline_secrets(cfg: DeployConfig) -> DeployConfig:
    """The config as it may be written down: an inline secret is dropped (references to files and environment
    variables stay; `serve.deploy_secrets.prepare_run_secrets` moves an inline secret to a 0600 file first)."""
    if cfg.transport.shared_secret is None:
        return cfg
    return msgspec.structs.replace(cfg, transport=msgspec.structs.replace(cfg.transport, shared_secret=None))


def write_resolved(cfg: DeployConfig, run_dir: Path) -> Path:
    """Write run_dir/config.json (the resolved config this run uses, never a secret) and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    path.write_text(config_to_json(without_inline_secrets(cfg)) + "\n", encoding="utf-8")
    return path
