"""Firewall rules rendered for iptables and nftables (pure), and the network's rules."""

from agent_payload.runtime import firewall, network


def test_iptables_rendering():
    rule = {"chain": firewall.FORWARD, "in": "!fleet0", "out": "fl-+", "src": "10.0.0.2",
            "proto": "udp", "dport": 53, "action": "accept", "tag": "fleet-port-x"}
    assert firewall.iptables_args(rule) == [
        "!", "-i", "fleet0", "-o", "fl-+", "-s", "10.0.0.2", "-p", "udp", "--dport", "53",
        "-m", "comment", "--comment", "fleet-port-x", "-j", "ACCEPT"]
    nat = {"chain": firewall.OUTPUT, "dst": "127.0.0.1", "proto": "tcp", "dport": 8887,
           "local_dst": True, "action": "dnat", "to": "10.89.0.2:80", "tag": "t"}
    assert firewall.iptables_args(nat)[-6:] == ["--comment", "t", "-j", "DNAT",
                                                "--to-destination", "10.89.0.2:80"]
    assert ["-m", "addrtype", "--dst-type", "LOCAL"] == firewall.iptables_args(nat)[6:10]


def test_nft_rendering():
    rule = {"chain": firewall.FORWARD, "in": "!fleet0", "out": "fl-+", "action": "drop",
            "tag": "fleet-net-a"}
    assert firewall.nft_statement(rule) == \
        'iifname != "fleet0" oifname "fl-*" drop comment "fleet-net-a"'
    nat = {"chain": firewall.PREROUTING, "proto": "tcp", "dport": 80, "local_dst": True,
           "action": "dnat", "to": "10.89.0.2:8080", "tag": "p"}
    assert firewall.nft_statement(nat) == \
        'tcp dport 80 fib daddr type local dnat to 10.89.0.2:8080 comment "p"'
    replies = {"replies": True, "action": "accept", "tag": firewall.REPLIES_TAG}
    assert firewall.nft_statement(replies).startswith("ct state established,related accept")


def test_backend_override(monkeypatch):
    monkeypatch.setenv("FLEET_FIREWALL", "none")
    assert firewall.backend() is None
    monkeypatch.setenv("FLEET_FIREWALL", "nft")
    assert firewall.backend() == "nft"


def test_network_rules_follow_its_options():
    record = {"name": "shop", "bridge": "fl-abc", "subnet": "10.90.1.0/24"}
    default = network._rules(record)
    assert {r["tag"] for r in default} == {"fleet-net-fl-abc"}
    inside = [r for r in default if r.get("in") == "fl-abc" and r.get("out") == "fl-abc"]
    assert [r["action"] for r in inside] == ["accept"]
    assert any(r["action"] == "masquerade" and r.get("src") == "10.90.1.0/24" for r in default)
    closed = network._rules(dict(record, icc=False, masquerade=False))
    inside = [r for r in closed if r.get("in") == "fl-abc" and r.get("out") == "fl-abc"]
    assert [r["action"] for r in inside] == ["drop"]
    assert not any(r.get("src") for r in closed)
    assert closed[-2] == {"chain": firewall.FORWARD, "in": "fl-abc", "action": "drop",
                          "tag": "fleet-net-fl-abc"}


def test_link_and_port_rules():
    rules = network.link_rules("ab" * 32, "fl-x", "10.90.1.3",
                               [("10.90.1.2", ["5432/tcp", "53/udp"])])
    assert [(r["dst"], r["proto"], r["dport"]) for r in rules] == [
        ("10.90.1.2", "tcp", 5432), ("10.90.1.2", "udp", 53)]
    assert {r["tag"] for r in rules} == {"fleet-link-abababababab"}
    ports = network._port_rules("fleet-port-1", {"host_ip": "127.0.0.1", "host_port": 8443,
                                                 "port": 443, "proto": "tcp"}, "10.89.0.5")
    assert [r["chain"] for r in ports] == ["prerouting", "output", "forward"]
    assert ports[0]["dst"] == "127.0.0.1" and ports[0]["to"] == "10.89.0.5:443"
    assert ports[2]["dport"] == 443


def test_list_networks_reads_only_network_records(tmp_path):
    from agent_payload.oci.store import Store
    store = Store(str(tmp_path))
    base = tmp_path / "networks"
    base.mkdir()
    (base / "shop.json").write_text('{"name": "shop", "subnet": "10.90.1.0/24"}')
    (base / "shop.ipam.json").write_text('{"10.90.1.2": "abc"}')
    (base / ".ports.json").write_text('{"8887/tcp": "abc"}')
    assert [n["name"] for n in network.list_networks(store)] == ["shop"]
