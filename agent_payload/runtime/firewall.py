"""The host's packet filter for container networks: iptables or nftables, whichever the
host has (iptables first: on a host with both, other tools' rules live there too).

Rules are described once, as plain dicts, and rendered for either tool:
``{"chain": "forward" | "prerouting" | "output" | "postrouting", "in": DEV,
"out": DEV, "src": NET, "dst": NET, "proto": "tcp", "dport": N, "local_src": bool,
"local_dst": bool, "replies": bool, "action": "accept" | "drop" | "masquerade" |
"dnat", "to": "ADDR:PORT", "tag": COMMENT}``. A device may start with ``!`` (not that
device) or end with ``+`` (any device with that prefix).

fleet's rules live in chains of their own, so their order is fleet's whatever else the
host runs: iptables' FLEET-FORWARD (filter) and FLEET-PREROUTING / FLEET-OUTPUT /
FLEET-POSTROUTING (nat), each jumped to from the top of the built-in chain; nftables'
table ``ip fleet`` with one base chain per hook. The forward chain starts with the rule
that lets replies back in; rules added ``first`` (published ports, links: accepts) go on
top, the others (a network's) at the end. Every rule carries a tag (a comment), by which
it is found and removed; a change of several rules is one iptables-restore or nft run.

A process makes sure of fleet's chains once (one iptables-save), not per rule. A payload
kept between commands looks again at the next command only if nf_tables' ruleset
generation (nfgen.py) moved by more than its own changes since: anything else touched
the rules, or the host's iptables is the legacy one, which does not count there.
"""

import os

from agent_payload import tools

FORWARD, PREROUTING, OUTPUT, POSTROUTING = "forward", "prerouting", "output", "postrouting"
_IPT_CHAINS = {FORWARD: ("filter", "FORWARD", "FLEET-FORWARD"),
               PREROUTING: ("nat", "PREROUTING", "FLEET-PREROUTING"),
               OUTPUT: ("nat", "OUTPUT", "FLEET-OUTPUT"),
               POSTROUTING: ("nat", "POSTROUTING", "FLEET-POSTROUTING")}
_NFT_HOOKS = {FORWARD: "type filter hook forward priority filter",
              PREROUTING: "type nat hook prerouting priority dstnat",
              OUTPUT: "type nat hook output priority -100",
              POSTROUTING: "type nat hook postrouting priority srcnat"}
REPLIES_TAG = "fleet-replies"


class FirewallError(Exception):
    """The packet filter refused a change (one line)."""


def backend():
    """``iptables``, ``nft`` or None (neither installed); FLEET_FIREWALL overrides the
    choice (``none`` too), for hosts and tests that want the other one."""
    chosen = os.environ.get("FLEET_FIREWALL")
    if chosen:
        return None if chosen == "none" else chosen
    for tool in ("iptables", "nft"):
        if tools.which(tool):
            return tool
    return None


def _run(argv, stdin=None):
    return tools.run(argv, stdin)


# --- rendering -------------------------------------------------------------------------

def _ipt_device(flag, device):
    if device.startswith("!"):
        return ["!", flag, device[1:]]
    return [flag, device]


def iptables_args(rule):
    """The rule as iptables match and target arguments (no table or chain)."""
    args = []
    if rule.get("replies"):
        args += ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]
    for key, flag in (("in", "-i"), ("out", "-o"), ("src", "-s"), ("dst", "-d")):
        if rule.get(key):
            args += _ipt_device(flag, rule[key])
    if rule.get("proto"):
        args += ["-p", rule["proto"]]
        if rule.get("dport"):
            args += ["--dport", str(rule["dport"])]
    if rule.get("local_src"):
        args += ["-m", "addrtype", "--src-type", "LOCAL"]
    if rule.get("local_dst"):
        args += ["-m", "addrtype", "--dst-type", "LOCAL"]
    args += ["-m", "comment", "--comment", rule["tag"], "-j", rule["action"].upper()]
    if rule["action"] == "dnat":
        args += ["--to-destination", rule["to"]]
    return args


def _nft_value(key, value):
    negate = value.startswith("!")
    value = value.lstrip("!")
    if key in ("iifname", "oifname"):
        value = '"' + (value[:-1] + "*" if value.endswith("+") else value) + '"'
    return f"{key} {'!= ' if negate else ''}{value}"


def nft_statement(rule):
    """The rule as one nftables rule statement."""
    parts = []
    if rule.get("replies"):
        parts.append("ct state established,related")
    for key, word in (("in", "iifname"), ("out", "oifname"), ("src", "ip saddr"),
                      ("dst", "ip daddr")):
        if rule.get(key):
            parts.append(_nft_value(word, rule[key]))
    if rule.get("proto"):
        parts.append(f"{rule['proto']} dport {rule['dport']}" if rule.get("dport")
                     else f"meta l4proto {rule['proto']}")
    if rule.get("local_src"):
        parts.append("fib saddr type local")
    if rule.get("local_dst"):
        parts.append("fib daddr type local")
    parts.append(f'comment "{rule["tag"]}"')  # nft wants the comment last of the matches
    action = rule["action"]
    parts.insert(-1, f"dnat to {rule['to']}" if action == "dnat" else action)
    return " ".join(parts)


# --- iptables --------------------------------------------------------------------------

_ready = set()  # chains known to exist in this process (set up once, not per rule)
# The nf_tables generation at which _ready was last known true (None: unknown), and
# whether a new command began since (forget): see _recheck.
_known = {"generation": None, "recheck": False}


def forget():
    """A new command on a kept payload process: someone may have flushed fleet's chains
    since, so check them again before the next rule, unless nf_tables shows that nothing
    changed at all since they were last seen (_recheck)."""
    _known["recheck"] = True


def _recheck():
    if _known["recheck"]:
        _known["recheck"] = False
        if _known["generation"] is None or _generation() != _known["generation"]:
            _ready.clear()


def _generation():
    """nf_tables' ruleset generation where the packet filter keeps its rules there
    (nftables, iptables-nft), else None: a legacy iptables change does not bump it."""
    if backend() == "iptables":
        path = tools.which("iptables")
        if not path or "nft" not in os.path.basename(os.path.realpath(path)):
            return None
    from agent_payload.runtime import nfgen

    return nfgen.generation()


def _ipt_saved():
    """{table: [line]} of every table, from one iptables-save run. Fleet's chains seen
    there whole (chain and jump) count as made for the rest of the process."""
    generation = _generation()  # before: a change during the save shows as a new one
    tables, table = {}, None
    for line in _run(["iptables-save"]).stdout.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:].strip(), [])
        elif table is not None and line[:1] in (":", "-"):
            table.append(" ".join(line.replace('"', "").split()))
    for table, builtin, own in _IPT_CHAINS.values():
        if all(_ipt_present(tables, table, builtin, own)):
            _ready.add(own)
        else:  # gone since (a flushed built-in chain): made again before the next rule
            _ready.discard(own)
    _known["generation"] = generation  # what _ready holds was so at this generation
    return tables


def _ipt_present(saved, table, builtin, own):
    """(chain made, jump to it in place) in an _ipt_saved() listing."""
    lines = saved.get(table, [])
    return (any(line.split()[:1] == [f":{own}"] for line in lines),
            f"-A {builtin} -m comment --comment fleet -j {own}" in lines)


def _ipt_setup(chains):
    """{table: [restore line]} that make fleet's chains among ``chains`` and their jumps
    where the host lacks them, from one look at iptables-save (a change made through
    iptables-restore along with the rules, not a process per chain and check)."""
    _recheck()
    wanted = [_IPT_CHAINS[chain] for chain in sorted(chains)
              if _IPT_CHAINS[chain][2] not in _ready]
    if not wanted:
        return {}
    saved, lines = _ipt_saved(), {}
    for table, builtin, own in wanted:
        made, jumped = _ipt_present(saved, table, builtin, own)
        if not made:
            lines.setdefault(table, []).append(f"-N {own}")
            if own == _IPT_CHAINS[FORWARD][2]:
                replies = {"replies": True, "action": "accept", "tag": REPLIES_TAG}
                lines[table].append(f"-A {own} {' '.join(iptables_args(replies))}")
        if not jumped:
            lines.setdefault(table, []).append(
                f"-I {builtin} 1 -m comment --comment fleet -j {own}")
    return lines


def _ipt_restore(lines_by_table):
    """Apply -A/-I/-D lines in one iptables-restore run (one process, one commit)."""
    script = "".join(f"*{table}\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
                     for table, lines in lines_by_table.items() if lines)
    if not script:
        return
    # Read only when it can matter: with nothing known, nothing is carried over.
    before = _generation() if _known["generation"] is not None else None
    done = _run(["iptables-restore", "-w", "--noflush"], stdin=script)
    if done.returncode != 0:
        _known["generation"] = None
        raise FirewallError(f"iptables-restore: {done.stderr.strip()}")
    # Each COMMIT is one generation: exactly ours since the last look means that what
    # was known then (plus this change) still holds.
    known = before is not None and _known["generation"] == before
    after = _generation() if known else None
    commits = script.count("COMMIT\n")
    _known["generation"] = after if known and after == before + commits else None


def _ipt_add(rules, first):
    chains = {rule["chain"] for rule in rules}
    lines = _ipt_setup(chains)
    for rule in (reversed(rules) if first else rules):
        table, _builtin, own = _IPT_CHAINS[rule["chain"]]
        where = f"-I {own} 1" if first else f"-A {own}"
        lines.setdefault(table, []).append(f"{where} {' '.join(iptables_args(rule))}")
    _ipt_restore(lines)
    _ready.update(_IPT_CHAINS[chain][2] for chain in chains)


def _ipt_listed(tag_prefix):
    """{table: [rule line]} of every fleet rule whose tag starts with ``tag_prefix``."""
    found = {}
    for table, lines in _ipt_saved().items():
        for line in lines:
            words = line.split()
            if words[:1] == ["-A"] and words[1].startswith("FLEET-") and "--comment" in words:
                tag = words[words.index("--comment") + 1]
                if tag.startswith(tag_prefix):
                    found.setdefault(table, []).append((tag, " ".join(words[1:])))
    return found


def _ipt_teardown():
    saved, lines = _ipt_saved(), {}
    for table, builtin, own in _IPT_CHAINS.values():
        jump = f"-A {builtin} -m comment --comment fleet -j {own}"
        lines.setdefault(table, []).extend(
            "-D" + line[2:] for line in saved.get(table, []) if line == jump)
        if _ipt_present(saved, table, builtin, own)[0]:
            lines[table] += [f"-F {own}", f"-X {own}"]
    _ready.clear()
    _ipt_restore(lines)


# --- nftables --------------------------------------------------------------------------

def _nft(script):
    """Run ``script`` through nft -f (one transaction, one generation)."""
    before = _generation() if _known["generation"] is not None else None
    done = _run(["nft", "-f", "-"], stdin=script)
    known = done.returncode == 0 and before is not None and _known["generation"] == before
    after = _generation() if known else None
    _known["generation"] = after if known and after == before + 1 else None
    return done


def _nft_setup():
    _recheck()
    if "nft" in _ready:
        return
    generation = _generation()
    if _run(["nft", "list", "table", "ip", "fleet"]).returncode == 0:
        _known["generation"] = generation
    else:
        lines = ["add table ip fleet"]
        for chain, hook in _NFT_HOOKS.items():
            lines.append(f"add chain ip fleet {chain} {{ {hook}; policy accept; }}")
        replies = {"replies": True, "action": "accept", "tag": REPLIES_TAG}
        lines.append(f"add rule ip fleet {FORWARD} {nft_statement(replies)}")
        done = _nft("\n".join(lines) + "\n")
        if done.returncode != 0:
            raise FirewallError(f"nft: {done.stderr.strip()}")
    _ready.add("nft")


def _nft_listed(tag_prefix):
    """[(chain, handle, tag, statement)] of the fleet rules whose tag starts with
    ``tag_prefix``."""
    listed = _run(["nft", "-a", "list", "table", "ip", "fleet"])
    found, chain = [], None
    for line in listed.stdout.splitlines():
        line = line.strip()
        if line.startswith("chain "):
            chain = line.split()[1]
        elif "# handle " in line and 'comment "' in line:
            statement, handle = line.rsplit("# handle ", 1)
            tag = statement.split('comment "', 1)[1].split('"', 1)[0]
            if tag.startswith(tag_prefix):
                found.append((chain, handle.strip(), tag, statement.strip()))
    return found


def _nft_add(rules, first):
    _nft_setup()
    verb = "insert" if first else "add"
    lines = [f"{verb} rule ip fleet {rule['chain']} {nft_statement(rule)}"
             for rule in (reversed(rules) if first else rules)]
    done = _nft("\n".join(lines) + "\n")
    if done.returncode != 0:
        raise FirewallError(f"nft: {done.stderr.strip()}")


# --- the interface ---------------------------------------------------------------------

def add(rules, first=False):
    """Add ``rules`` in their order: ``first`` on top of fleet's chains (published ports,
    links: accepts), else at the end (a network's). To replace rules, remove their tag
    first: adding does not look for rules already there."""
    tool = backend()
    if tool is None:
        raise FirewallError("no packet filter: install iptables or nftables "
                            "(Debian/Ubuntu: iptables)")
    if not rules:
        return
    adding = _ipt_add if tool == "iptables" else _nft_add
    try:
        adding(rules, first)
    except FirewallError:
        # Another process may have removed fleet's chains since this one made sure of
        # them (the last network went): make sure again, once.
        _ready.clear()
        adding(rules, first)


def remove(tag_prefix):
    """Remove every fleet rule whose tag starts with ``tag_prefix``."""
    tool = backend()
    if tool == "iptables":
        _ipt_restore({table: [f"-D {line}" for _tag, line in rules]
                      for table, rules in _ipt_listed(tag_prefix).items()})
    elif tool == "nft":
        deletes = [f"delete rule ip fleet {chain} handle {handle}"
                   for chain, handle, _tag, _text in _nft_listed(tag_prefix)]
        if deletes:
            _nft("\n".join(deletes) + "\n")


def tagged(tag_prefix):
    """{tag: [rule text, ...]} of the fleet rules whose tag starts with ``tag_prefix``."""
    found = {}
    if backend() == "iptables":
        for rules in _ipt_listed(tag_prefix).values():
            for tag, line in rules:
                found.setdefault(tag, []).append(line)
    elif backend() == "nft":
        for _chain, _handle, tag, statement in _nft_listed(tag_prefix):
            found.setdefault(tag, []).append(statement)
    return found


def teardown():
    """Remove fleet's chains (or table) when no fleet rule but the replies rule is left."""
    tool = backend()
    if tool is None or set(tagged("fleet")) - {REPLIES_TAG}:
        return
    if tool == "iptables":
        _ipt_teardown()
    else:
        _nft("delete table ip fleet\n")
        _ready.discard("nft")
