"""Firewall rules rendered for iptables and nftables (pure), and the network's rules."""

import pytest

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


class RecordingIptables:
    """A double of firewall._run: answers iptables-save with ``saved`` and records every
    command with its input."""

    def __init__(self, saved=""):
        self.saved, self.calls = saved, []

    def __call__(self, argv, stdin=None):
        import subprocess

        self.calls.append((argv[0], stdin))
        out = self.saved if argv[0] == "iptables-save" else ""
        return subprocess.CompletedProcess(argv, 0, out, "")


FORWARD_RULE = {"chain": firewall.FORWARD, "out": "fl-a", "proto": "tcp", "dport": 80,
                "action": "accept", "tag": "fleet-port-1"}
SAVED_READY = "".join(line + "\n" for line in (
    "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":FLEET-FORWARD - [0:0]",
    '-A FORWARD -m comment --comment "fleet" -j FLEET-FORWARD',
    "-A FLEET-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED"
    ' -m comment --comment "fleet-replies" -j ACCEPT',
    '-A FLEET-FORWARD -o fl-a -p tcp -m tcp --dport 80 -m comment --comment "fleet-port-1"'
    " -j ACCEPT",
    "COMMIT"))


def test_iptables_add_makes_missing_chains_in_its_one_restore(monkeypatch):
    fake = RecordingIptables("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")
    monkeypatch.setattr(firewall, "_run", fake)
    monkeypatch.setattr(firewall, "_ready", set())
    monkeypatch.setenv("FLEET_FIREWALL", "iptables")
    firewall.add([FORWARD_RULE], first=True)
    assert [tool for tool, _ in fake.calls] == ["iptables-save", "iptables-restore"]
    script = fake.calls[1][1].splitlines()
    assert script[:3] == ["*filter", "-N FLEET-FORWARD",
                          "-A FLEET-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED "
                          "-m comment --comment fleet-replies -j ACCEPT"]
    assert script[3] == "-I FORWARD 1 -m comment --comment fleet -j FLEET-FORWARD"
    assert script[4].startswith("-I FLEET-FORWARD 1 -o fl-a") and script[5] == "COMMIT"
    firewall.add([FORWARD_RULE])  # known now: no second look
    assert [tool for tool, _ in fake.calls][2:] == ["iptables-restore"]


def test_iptables_add_puts_back_only_a_lost_jump(monkeypatch):
    saved = SAVED_READY.replace('-A FORWARD -m comment --comment "fleet" -j FLEET-FORWARD\n', "")
    fake = RecordingIptables(saved)
    monkeypatch.setattr(firewall, "_run", fake)
    monkeypatch.setattr(firewall, "_ready", set())
    monkeypatch.setenv("FLEET_FIREWALL", "iptables")
    firewall.add([FORWARD_RULE])
    script = fake.calls[1][1].splitlines()
    assert script[1] == "-I FORWARD 1 -m comment --comment fleet -j FLEET-FORWARD"
    assert not any(line.startswith("-N") for line in script)


def test_iptables_remove_and_teardown_read_one_save(monkeypatch):
    fake = RecordingIptables(SAVED_READY)
    monkeypatch.setattr(firewall, "_run", fake)
    monkeypatch.setattr(firewall, "_ready", set())
    monkeypatch.setenv("FLEET_FIREWALL", "iptables")
    assert list(firewall.tagged("fleet-port")) == ["fleet-port-1"]
    firewall.remove("fleet-port-1")
    assert [tool for tool, _ in fake.calls] == ["iptables-save", "iptables-save",
                                                "iptables-restore"]
    assert fake.calls[2][1].splitlines()[1].startswith("-D FLEET-FORWARD -o fl-a")
    firewall.add([FORWARD_RULE])  # the chain was seen whole in those saves: no third
    assert [tool for tool, _ in fake.calls][3:] == ["iptables-restore"]
    fake.calls.clear()
    firewall._ipt_teardown()
    script = fake.calls[1][1].splitlines()
    assert script == ["*filter", "-D FORWARD -m comment --comment fleet -j FLEET-FORWARD",
                      "-F FLEET-FORWARD", "-X FLEET-FORWARD", "COMMIT"]


def _nat_publishing(monkeypatch, tmp_path):
    """Stores under tmp_path whose ports go to a recording firewall, the host's lock and
    port record in tmp_path/run."""
    from agent_payload.oci.store import Store
    added = []
    monkeypatch.setattr(network, "LOCK_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(network, "_sysctl", lambda *args: None)
    monkeypatch.setattr(firewall, "backend", lambda: "iptables")
    monkeypatch.setattr(firewall, "add", lambda rules, first=False: added.append(rules))
    monkeypatch.setattr(firewall, "remove", lambda tag: None)
    return (lambda name: Store(str(tmp_path / name))), added


def test_a_port_published_by_nat_in_one_store_is_taken_for_another(monkeypatch, tmp_path):
    import socket
    store, added = _nat_publishing(monkeypatch, tmp_path)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # free on the host: only the record can say it is taken
    mapping = {"host_ip": "127.0.0.1", "host_port": port, "port": 80, "proto": "tcp"}
    shop, blog = store("shop"), store("blog")
    network.publish(shop, "a" * 64, "10.89.0.2", [mapping])
    assert len(added) == 1
    with pytest.raises(network.NetworkError, match=f"{port}/tcp is already published "
                                                   "by container aaaaaaaaaaaa"):
        network.publish(blog, "b" * 64, "10.90.0.2", [mapping])
    network.unpublish(shop, "a" * 64)
    assert network.publish(blog, "b" * 64, "10.90.0.2", [mapping]) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


def test_a_removed_stores_host_port_entry_holds_nothing(monkeypatch, tmp_path):
    import shutil
    store, _ = _nat_publishing(monkeypatch, tmp_path)
    mapping = {"host_ip": "127.0.0.1", "host_port": 0, "port": 80, "proto": "tcp"}
    shown = network.publish(store("gone"), "a" * 64, "10.89.0.2", [mapping])
    port = int(shown["80/tcp"][0]["HostPort"])
    shutil.rmtree(tmp_path / "gone")  # removed without unpublishing
    fixed = dict(mapping, host_port=port)
    assert network.publish(store("next"), "b" * 64, "10.90.0.2", [fixed])


def test_a_creates_address_arithmetic_matches_ipaddress():
    import ipaddress
    for subnet in ("10.89.0.0/16", "10.90.3.0/24", "192.168.1.4/30"):
        record = {"subnet": subnet}
        assert list(network._hosts(record)) == [
            str(a) for a in ipaddress.ip_network(subnet).hosts()]
        assert network._prefixlen(record) == ipaddress.ip_network(subnet).prefixlen
    assert network._mac("10.89.0.2") == "02:42:0a:59:00:02"


def test_a_container_create_imports_no_launcher_and_no_collections():
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {root!r}); from agent_payload import serve; "
            "import agent_payload.modules.container_info, agent_payload.modules.container; "
            "print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True,
                                capture_output=True, text=True).stdout.split())
    assert not loaded & {"agent_payload.runtime.launch", "collections", "contextlib",
                         "ipaddress", "functools", "enum", "re"}


def test_links_on_a_network_with_icc_read_no_rules(monkeypatch, tmp_path):
    from agent_payload.oci.store import Store
    calls = []
    monkeypatch.setattr(firewall, "backend", lambda: "iptables")
    monkeypatch.setattr(firewall, "remove", lambda tag: calls.append(("remove", tag)))
    monkeypatch.setattr(firewall, "add", lambda rules, first=False: calls.append(("add",)))
    store = Store(str(tmp_path))
    base = tmp_path / "networks"
    base.mkdir(exist_ok=True)
    (base / "open.json").write_text('{"name": "open", "bridge": "fl-a", "icc": true}')
    (base / "closed.json").write_text('{"name": "closed", "bridge": "fl-b", "icc": false}')
    targets = [("10.90.0.3", ["5432/tcp"])]
    network.open_links(store, "open", "c" * 64, "10.90.0.2", targets)
    assert calls == []  # nothing to look for: link rules exist only with icc false
    network.open_links(store, "closed", "c" * 64, "10.90.1.2", targets)
    assert calls == [("remove", "fleet-link-cccccccccccc"), ("add",)]


SAVED_ALL = SAVED_READY.replace("COMMIT\n", "COMMIT\n", 1) + "".join(line + "\n" for line in (
    "*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
    ":FLEET-PREROUTING - [0:0]", ":FLEET-OUTPUT - [0:0]", ":FLEET-POSTROUTING - [0:0]",
    '-A PREROUTING -m comment --comment "fleet" -j FLEET-PREROUTING',
    '-A OUTPUT -m comment --comment "fleet" -j FLEET-OUTPUT',
    '-A POSTROUTING -m comment --comment "fleet" -j FLEET-POSTROUTING', "COMMIT"))


class Generations(RecordingIptables):
    """RecordingIptables whose restores move nf_tables' generation, one per COMMIT."""

    def __init__(self, saved):
        super().__init__(saved)
        self.generation = 100

    def __call__(self, argv, stdin=None):
        if argv[0] == "iptables-restore":
            self.generation += stdin.count("COMMIT\n")
        return super().__call__(argv, stdin)


@pytest.fixture
def kept_payload(monkeypatch):
    """firewall with fresh process state, on iptables, with a double for the generation."""
    fake = Generations(SAVED_ALL)
    monkeypatch.setattr(firewall, "_run", fake)
    monkeypatch.setattr(firewall, "_ready", set())
    monkeypatch.setattr(firewall, "_known", {"generation": None, "recheck": False})
    monkeypatch.setattr(firewall, "_generation", lambda: fake.generation)
    monkeypatch.setenv("FLEET_FIREWALL", "iptables")
    return fake


def tools_run(fake):
    return [tool for tool, _ in fake.calls]


def test_a_kept_payload_skips_the_look_when_nothing_but_itself_changed_the_rules(
        kept_payload):
    firewall.add([FORWARD_RULE])
    assert tools_run(kept_payload) == ["iptables-save", "iptables-restore"]
    firewall.forget()  # the next command
    firewall.add([FORWARD_RULE])
    assert tools_run(kept_payload)[2:] == ["iptables-restore"]


def test_a_kept_payload_looks_again_after_any_other_change(kept_payload):
    firewall.add([FORWARD_RULE])
    kept_payload.generation += 1  # someone else's change (an admin, a firewall reload)
    firewall.forget()
    firewall.add([FORWARD_RULE])
    assert tools_run(kept_payload)[2:] == ["iptables-save", "iptables-restore"]


def test_without_a_generation_every_command_looks(kept_payload, monkeypatch):
    monkeypatch.setattr(firewall, "_generation", lambda: None)  # legacy iptables
    firewall.add([FORWARD_RULE])
    firewall.add([FORWARD_RULE])  # the same command: once per process still
    firewall.forget()
    firewall.add([FORWARD_RULE])
    assert tools_run(kept_payload) == ["iptables-save", "iptables-restore",
                                       "iptables-restore", "iptables-save",
                                       "iptables-restore"]


def test_a_change_between_the_look_and_the_restore_is_caught(kept_payload):
    firewall.add([FORWARD_RULE])
    original = kept_payload.__class__.__call__

    def racing(self, argv, stdin=None):
        if argv[0] == "iptables-restore":
            self.generation += 1  # another process commits just before ours
        return original(self, argv, stdin)

    kept_payload.__class__.__call__ = racing
    try:
        firewall.add([FORWARD_RULE])
    finally:
        kept_payload.__class__.__call__ = original
    firewall.forget()
    firewall.add([FORWARD_RULE])
    assert tools_run(kept_payload)[-2:] == ["iptables-save", "iptables-restore"]


def test_nfgen_reads_the_generation_attribute():
    import struct

    from agent_payload.runtime import netlink, nfgen

    attrs = struct.pack("=HH", 8, nfgen.NFTA_GEN_ID) + struct.pack(">I", 5514)
    attrs += struct.pack("=HH", 8, 2) + struct.pack(">I", 77)
    body = struct.pack("=BBH", 0, 0, 0) + attrs
    kind = nfgen.NFNL_SUBSYS_NFTABLES << 8 | nfgen.NFT_MSG_NEWGEN
    message = struct.pack("=LHHLL", 16 + len(body), kind, 0, 1, 0) + body
    assert nfgen.parse_generation(message) == 5514
    error = struct.pack("=LHHLL", 36, netlink.NLMSG_ERROR, 0, 1, 0) + b"\0" * 20
    assert nfgen.parse_generation(error) is None
    assert nfgen.parse_generation(b"") is None


def test_a_kept_payload_puts_back_a_jump_flushed_between_commands(kept_payload):
    firewall.add([FORWARD_RULE])
    # Between the commands an admin flushes FORWARD; the next command's first call is a
    # remove (a network brought up again), whose look sees the jump gone.
    kept_payload.saved = SAVED_ALL.replace(
        '-A FORWARD -m comment --comment "fleet" -j FLEET-FORWARD\n', "")
    kept_payload.generation += 1
    firewall.forget()
    firewall.remove("fleet-none")
    firewall.add([FORWARD_RULE])
    script = kept_payload.calls[-1][1].splitlines()
    assert "-I FORWARD 1 -m comment --comment fleet -j FLEET-FORWARD" in script
