"""Where a service's replicas run: a pure plan from what runs now.

Replicas are numbered 1..N and named NAME.1 … NAME.N. A re-run with what already runs
moves nothing; scaling up places each missing number on the least-loaded eligible host
(ties: the first in play order); scaling down removes the highest numbers. A replica on
a host that is no longer eligible (a constraint, a host gone from the play) is placed
again elsewhere. ``max_per_host`` caps replicas per host (1 when they publish a fixed
host port); wanting more than the hosts can take is an error before anything starts.
"""


class PlacementError(Exception):
    """The replicas cannot be placed (one line)."""


def parse_constraint(text):
    """``group == web`` / ``group != db`` / ``host == lab01`` as (key, equal, value)."""
    for operator in ("==", "!="):
        key, found, value = str(text).partition(operator)
        if found and key.strip() in ("group", "host") and value.strip():
            return key.strip(), operator == "==", value.strip()
    raise PlacementError(f"constraint {text!r} is not 'group == NAME', 'group != NAME', "
                         "'host == NAME' or 'host != NAME'")


def eligible(hosts, constraints, groups_of):
    """The hosts that meet every constraint; ``groups_of(host)`` names its groups."""
    parsed = [parse_constraint(c) for c in constraints or []]

    def fits(host):
        for key, equal, value in parsed:
            has = value in groups_of(host) if key == "group" else host == value
            if has != equal:
                return False
        return True

    return [host for host in hosts if fits(host)]


def place(service, wanted, hosts, current, max_per_host=None, reason=None):
    """{host: [replica numbers]} for ``wanted`` replicas over ``hosts`` (eligible, in play
    order), given ``current`` ({host: [numbers]} of what runs now, anywhere)."""
    if wanted < 0:
        raise PlacementError(f"service {service}: replicas must be 0 or more")
    if wanted and not hosts:
        raise PlacementError(f"service {service}: no host of the play meets its "
                             "constraints")
    if max_per_host is not None and wanted > max_per_host * len(hosts):
        why = f" ({reason})" if reason else ""
        raise PlacementError(
            f"service {service}: {wanted} replicas at most {max_per_host} per host{why} "
            f"need {-(-wanted // max_per_host)} hosts, the play has {len(hosts)} "
            f"({', '.join(hosts)})")
    seen, plan = set(), {}
    for host in hosts:
        kept = []
        for number in sorted(set(current.get(host) or [])):
            if number <= wanted and number not in seen:
                seen.add(number)
                kept.append(number)
        if max_per_host is not None:
            seen.difference_update(kept[max_per_host:])
            kept = kept[:max_per_host]
        plan[host] = kept
    for number in range(1, wanted + 1):
        if number in seen:
            continue
        room = [h for h in hosts if max_per_host is None or len(plan[h]) < max_per_host]
        target = min(room, key=lambda h: (len(plan[h]), hosts.index(h)))
        plan[target].append(number)
        seen.add(number)
    return {host: sorted(numbers) for host, numbers in plan.items()}
