"""The seed's scenario on one lab host, and what goes with it: a db with a named volume
and an exposed port, a redis, a web linked to both that publishes 80 as 8887; icc false
(web reaches db only on the exposed port, an unlinked container not at all); a second
project on its own network out of reach; a recreated db followed by web's /etc/hosts;
network_mode container:NAME; publish_all; nothing left afterwards."""

import json
import urllib.request

import pytest

from tests.integration.conftest import LAB_MARKS
from tests.integration.helpers import busybox_session, ssh_run

pytestmark = LAB_MARKS
SERVE = ("mkdir -p /www && echo {name}-here > /www/index.html && "
         "for p in {ports}; do httpd -p $p -h /www; done; exec sleep 600")


def _probe(address, port):
    return (f"if nc -w 2 {address} {port} </dev/null >/dev/null 2>&1; then echo open; "
            "else echo closed; fi")


@pytest.fixture
def host(lab, lab_inventory):
    with busybox_session(lab, lab_inventory, 2) as (session, store, parent, image, tag):
        yield session, store, parent, image, tag


def _server(name, ports, **extra):
    return dict(name=name, init=True, command=["sh", "-c", SERVE.format(
        name=name.split("-")[1], ports=" ".join(str(p) for p in ports))], **extra)


def test_seed_scenario_with_icc_off(lab, host):
    session, store, parent, image, tag = host
    config, state = lab
    address_of = state.hosts[2].address
    net, other_net = f"fleet-pa-{tag}", f"fleet-pb-{tag}"
    db, redis, web = f"fleet-db-{tag}", f"fleet-redis-{tag}", f"fleet-web-{tag}"
    stranger, outsider = f"fleet-stranger-{tag}", f"fleet-out-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent, "network_mode": net}
    names = (web, db, redis, stranger, outsider)

    made_ids = []

    def call(module, params, timeout=60):
        answer = session.call(module, params, timeout=timeout)
        assert not answer.get("failed"), answer
        if module == "container" and answer.get("container"):
            made_ids.append(answer["container"])
        return answer

    def inside(name, script):
        return call("container_exec", {"name": name, "store": store,
                                       "command": ["sh", "-c", script]})["stdout"]

    try:
        call("network", {"name": net, "subnet": "10.91.20.0/24", "icc": False,
                         "store": store})
        call("network", {"name": other_net, "subnet": "10.91.21.0/24", "store": store})
        made = call("container", dict(base, **_server(db, [5432, 6000]), expose=["5432"],
                                      volumes=[f"fleet-dbdata-{tag}:/var/lib/db"]))
        db_address = made["container"]["NetworkSettings"]["IPAddress"]
        call("container", dict(base, **_server(redis, [6379]), expose=["6379"]))
        front = call("container", dict(base, **_server(web, [80]), ports=["8887:80"],
                                       links=[f"{db}:dbapp", f"{redis}:redis"]))
        assert front["container"]["NetworkSettings"]["Ports"] == {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8887"}]}
        call("container", dict(base, **_server(stranger, [1])))
        far = call("container", dict(base, **_server(outsider, [5432]), expose=["5432"],
                                     network_mode=other_net))
        far_address = far["container"]["NetworkSettings"]["IPAddress"]

        # from the controller, at the host's address
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://{address_of}:8887/", timeout=2) as r:
                    assert r.read().decode().strip() == "web-here"
                    break
            except OSError:
                continue
        else:
            raise AssertionError("web did not answer on 8887")

        seen = inside(web, "grep -w dbapp /etc/hosts; echo $DBAPP_PORT_5432_TCP_ADDR "
                           "$DBAPP_PORT_5432_TCP_PORT $REDIS_PORT; "
                           + "; ".join(_probe(*t) for t in (
                               ("dbapp", 5432), ("dbapp", 6000), ("redis", 6379),
                               (far_address, 5432))))
        lines = seen.splitlines()
        assert lines[0].split() == [db_address, "dbapp", db], seen
        assert lines[1].split()[:2] == [db_address, "5432"], seen
        assert lines[1].split()[2].startswith("tcp://"), seen
        assert lines[2:] == ["open", "closed", "open", "closed"], seen
        assert inside(stranger, _probe(db_address, 5432)).strip() == "closed"

        # db comes back with a new address: web's /etc/hosts and its opening follow it
        call("container", dict(base, name=f"fleet-hold-{tag}", command=["sleep", "600"]))
        names += (f"fleet-hold-{tag}",)
        call("container", {"name": db, "state": "absent", "store": store,
                           "force_kill": True})
        call("container", dict(base, name=f"fleet-squat-{tag}", command=["sleep", "600"]))
        names += (f"fleet-squat-{tag}",)
        again = call("container", dict(base, **_server(db, [5432, 6000]), expose=["5432"],
                                       volumes=[f"fleet-dbdata-{tag}:/var/lib/db"]))
        moved = again["container"]["NetworkSettings"]["IPAddress"]
        assert moved != db_address
        seen = inside(web, "grep -w dbapp /etc/hosts | cut -f1; " + _probe("dbapp", 5432))
        assert seen.split() == [moved, "open"], seen
    finally:
        for name in names:
            session.call("container", {"name": name, "state": "absent", "store": store,
                                       "force_kill": True}, timeout=60)
        session.call("volume", {"name": f"fleet-dbdata-{tag}", "state": "absent",
                                "store": store})
        for name in (net, other_net):
            session.call("network", {"name": name, "state": "absent", "store": store})
    from agent_payload.runtime.network import _device
    ids = "\\|".join(c["Id"][:8] for c in made_ids)
    devices = f"{_device(net, store)}\\|{_device(other_net, store)}"
    left = ssh_run(config, address_of,
                   f"ip link | grep -c 'fleetv\\({ids}\\)\\|{devices}'; "
                   f"ip netns list | grep -c 'fleet-\\({ids}\\)'; "
                   f"iptables-save | grep -c 'fleet-\\(port\\|link\\)-\\({ids}\\)\\|{devices}'; "
                   "true", check=False)
    assert left.split() == ["0", "0", "0"], left


def test_container_network_mode_and_publish_all(lab, host):
    session, store, parent, image, tag = host
    net = f"fleet-pc-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent}
    db, side = f"fleet-db-{tag}", f"fleet-side-{tag}"
    try:
        made = session.call("container", dict(base, **_server(db, [5432]), network_mode=net,
                                              expose=["5432"], publish_all=True), timeout=60)
        assert not made["failed"], made
        ports = made["container"]["NetworkSettings"]["Ports"]
        assert list(ports) == ["5432/tcp"] and int(ports["5432/tcp"][0]["HostPort"]) > 0
        shared = session.call("container_run", dict(
            base, network_mode=f"container:{db}",
            command=["sh", "-c", "ip -4 -o addr show eth0 | grep -c inet; "
                                 "wget -qO- http://127.0.0.1:5432/"]), timeout=60)
        assert shared["stdout"].split() == ["1", "db-here"], shared
        refused = session.call("container_run", dict(base, network_mode="container:fleet-no",
                                                     command=["true"]), timeout=60)
        assert refused["failed"] and "no container named fleet-no" in refused["msg"]
        again = session.call("container", dict(base, name=side, command=["sleep", "60"],
                                               network_mode=f"container:{db}"), timeout=60)
        assert not again["failed"], again
        assert again["container"]["HostConfig"]["NetworkMode"] == \
            "container:" + made["container"]["Id"]
        json.dumps(again)
    finally:
        for name in (side, db):
            session.call("container", {"name": name, "state": "absent", "store": store,
                                       "force_kill": True}, timeout=60)
        session.call("network", {"name": net, "state": "absent", "store": store})


CROSS_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: db on the first host, its port published
      container:
        name: "{db}"
        image: "{{{{ fleet_lab_registry }}}}/busybox:latest"
        insecure_registries: "{{{{ fleet_insecure_registries.split(',') }}}}"
        network_mode: bridge
        expose: ["5432"]
        ports: ["5432"]
        env: {{DB_MODE: primary}}
        init: true
        command: ["sh", "-c", "mkdir -p /www; echo db-here > /www/index.html;
                               exec httpd -f -p 5432 -h /www"]
      when: inventory_hostname == "{first}"
    - name: web on the second host, linked to db across hosts
      container:
        name: "{web}"
        image: "{{{{ fleet_lab_registry }}}}/busybox:latest"
        insecure_registries: "{{{{ fleet_insecure_registries.split(',') }}}}"
        network_mode: bridge
        links: ["{db}:dbapp"]
        init: true
        command: ["sleep", "600"]
      when: inventory_hostname == "{second}"
    - name: a link to a port that is only exposed is refused
      container:
        name: "{web}-bad"
        image: "{{{{ fleet_lab_registry }}}}/busybox:latest"
        network_mode: bridge
        links: ["{hidden}"]
        command: ["true"]
      when: inventory_hostname == "{second}" and with_hidden | default(false) | bool
"""


def test_link_across_hosts(lab, lab_inventory, tmp_path):
    import subprocess
    import sys
    import uuid
    config, state = lab
    tag = uuid.uuid4().hex[:6]
    first, second = state.hosts[0], state.hosts[1]
    db, web, hidden = f"fleet-xdb-{tag}", f"fleet-xweb-{tag}", f"fleet-xhid-{tag}"
    book = tmp_path / "cross.yml"
    book.write_text(CROSS_PLAYBOOK.format(db=db, web=web, hidden=hidden, first=first.name,
                                          second=second.name))

    def fleet(*args):
        verb, *rest = args  # options before HOST: what follows a command is its own
        return subprocess.run([sys.executable, "-m", "fleet", verb, "-i", lab_inventory,
                               *rest], capture_output=True, text=True, timeout=120)

    try:
        applied = fleet("apply", str(book))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        port = json.loads(fleet("inspect", first.name, db).stdout)[0][
            "NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"]
        seen = fleet("exec", second.name, web, "sh", "-c",
                     "grep -w dbapp /etc/hosts; echo $DBAPP_PORT $DBAPP_PORT_5432_TCP_PORT "
                     "$DBAPP_ENV_DB_MODE; timeout 10 wget -qO- http://dbapp:$DBAPP_PORT_5432_TCP_PORT/")
        lines = seen.stdout.splitlines()
        assert len(lines) == 3, (seen, applied.stdout)
        assert lines[0].split() == [first.address, "dbapp", db], seen
        assert lines[1].split() == [f"tcp://{first.address}:{port}", port, "primary"], seen
        assert lines[2] == "db-here", seen
        assert fleet("run", "-d", "--name", hidden, "--expose", "6000", first.name,
                     f"{state.registries[0]['address']}/busybox:latest",
                     "sleep", "600").returncode == 0
        refused = fleet("apply", str(book), "-e", "with_hidden=true")
        assert refused.returncode != 0
        assert f"{hidden} runs on {first.name} and exposes 6000/tcp without publishing " \
               "it" in refused.stdout + refused.stderr, refused.stdout
    finally:
        for where, name in ((first, db), (second, web), (first, hidden)):
            fleet("rm", "-f", where.name, name)


def test_userland_proxy(lab, host):
    """A network that asks for the userland proxy: its published ports are a process's
    sockets, reachable from another host and from the host itself (127.0.0.1 too)."""
    session, store, parent, image, tag = host
    config, state = lab
    net, web = f"fleet-px-{tag}", f"fleet-pxweb-{tag}"
    base = {"image": image, "store": store, "cgroup_parent": parent, "network_mode": net}
    try:
        made = session.call("network", {"name": net, "subnet": "10.91.22.0/24",
                                        "userland_proxy": True, "store": store})
        assert not made["failed"] and made["network"]["UserlandProxy"], made
        front = session.call("container", dict(base, **_server(web, [80]),
                                               ports=["80", "127.0.0.1::80"]), timeout=60)
        assert not front["failed"], front
        # the proxy's command line names the container's directory (its id)
        count_proxies = (f"ps -eo args | grep '[r]untime.proxy import' | "
                         f"grep -c {front['container']['Id']}; true")
        bound = front["container"]["NetworkSettings"]["Ports"]["80/tcp"]
        wide, local = bound[0]["HostPort"], bound[1]["HostPort"]
        fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{}:{}/ && break; " \
                "sleep 0.2; done"
        assert ssh_run(config, state.hosts[0].address,
                       fetch.format(state.hosts[2].address, wide)).strip() == "pxweb-here"
        assert ssh_run(config, state.hosts[2].address,
                       fetch.format("127.0.0.1", local)).strip() == "pxweb-here"
        proxies = ssh_run(config, state.hosts[2].address, count_proxies, check=False)
        assert proxies.strip() == "1", proxies
        assert ssh_run(config, state.hosts[2].address, "iptables-save | grep -c "
                       f"fleet-port-{front['container']['Id'][:12]}; true",
                       check=False).strip() == "0"
    finally:
        session.call("container", {"name": web, "state": "absent", "store": store,
                                   "force_kill": True}, timeout=60)
        session.call("network", {"name": net, "state": "absent", "store": store})
    left = ssh_run(config, state.hosts[2].address, count_proxies, check=False)
    assert left.strip() == "0", left
