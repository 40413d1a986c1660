"""The topology section: validation with clear errors, and today's two-cluster setup as a 1x1 topology."""

from __future__ import annotations

import pytest

from prfaas.core.errors import ConfigError
from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, TopologyError, check_topology, two_cluster
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID


def topo(**changes: object) -> SiteTopology:
    base: dict[str, object] = dict(
        prfaas=[PrfaasSite(name="a"), PrfaasSite(name="b", accelerator="h100")],
        pd=[PdSite(name="x", traffic_rps=2.0), PdSite(name="y", traffic_rps=1.0)],
        links=[SiteLink(prfaas="a", pd="x"), SiteLink(prfaas="b", pd="y", capacity_gbps=10.0)],
    )
    base.update(changes)
    return SiteTopology(**base)  # type: ignore[arg-type]


def test_two_cluster_is_a_1x1_topology_with_todays_link_id() -> None:
    t = two_cluster(4, 8, 100.0, 0.005, n_pd_prefill=3)
    assert t.is_two_cluster
    assert [lk.link_id for lk in t.links] == [PRFAAS_EGRESS_LINK_ID]
    assert t.pd[0].decode_instances == 5
    assert t.num_gpus == (4 + 8) * 8


def test_queries() -> None:
    t = check_topology(topo())
    assert t.link("a", "x") is not None and t.link("a", "y") is None
    assert [lk.link_id for lk in t.links_to("y")] == ["b->y"]
    assert t.traffic_weights() == (2.0, 1.0)
    t2 = check_topology(topo(pd=[PdSite(name="x", instances=4), PdSite(name="y", instances=12)]))
    assert t2.traffic_weights() == (4.0, 12.0)  # no traffic given: weight = instances
    assert t.replace_prfaas_instances({"b": 9}).prfaas[1].instances == 9
    assert t.without_links({("a", "x")}).link("a", "x") is None


@pytest.mark.parametrize(("changes", "key", "words"), [
    (dict(pd=[]), "topology.pd", "at least one PD"),
    (dict(prfaas=[PrfaasSite(name="a"), PrfaasSite(name="a")]), "topology.prfaas[1].name", "duplicate"),
    (dict(pd=[PdSite(name="a"), PdSite(name="y")]), "topology.pd[0].name", "duplicate"),
    (dict(links=[SiteLink(prfaas="zz", pd="x")]), "topology.links[0].prfaas", "unknown PrfaaS cluster 'zz'"),
    (dict(links=[SiteLink(prfaas="a", pd="q")]), "topology.links[0].pd", "known: x, y"),
    (dict(links=[SiteLink(prfaas="a", pd="x"), SiteLink(prfaas="a", pd="x")]), "topology.links[1]", "one link per"),
    (dict(pd=[PdSite(name="x", traffic_rps=1.0), PdSite(name="y")]), "topology.pd", "missing: y"),
    (dict(pd=[PdSite(name="x", instances=4, prefill_instances=4)]), "topology.pd[0].prefill_instances",
     "[1, 3]"),
    (dict(pd=[PdSite(name="x y")]), "topology.pd[0].name", "without spaces"),
])
def test_invalid_topologies_name_the_key(changes: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(TopologyError) as err:
        check_topology(topo(**changes))
    assert err.value.key == key
    assert words in str(err.value)


def test_file_errors_name_file_key_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from prfaas.planner.multi_build import load_topology

    path = tmp_path / "t.toml"
    path.write_text('[[topology.prfaas]]\nname = "a"\n\n[[topology.pd]]\nname = "x"\n\n'
                    '[[topology.links]]\nprfaas = "a"\npd = "nowhere"\n')
    with pytest.raises(ConfigError) as err:
        load_topology(str(path))
    assert "t.toml:9" in str(err.value) and "unknown PD cluster 'nowhere'" in str(err.value)
    path.write_text('[[topology.pd]]\nname = "x"\ninstances = 1\n')
    with pytest.raises(ConfigError, match=r"topology.pd\[0\].instances"):
        load_topology(str(path))
    path.write_text('[[topology.pd]]\nname = "x"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        load_topology(str(path))
