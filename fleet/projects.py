"""Projects: what one playbook creates on the hosts carries the label fleet.project, so
that `fleet down` finds and removes all of it later, whether or not the playbook still
lists it (a container task removed from the playbook, a renamed service).

``with_project`` labels a task's arguments (the executor calls it for the modules that
create containers, volumes and networks); ``down`` runs the payload's teardown module on
every host, in parallel, one result per host (an unreachable host is reported, the
others are cleaned).
"""

from agent_payload import labels
from fleet.remote import call_on_hosts

LABELLED = ("container", "volume", "network")


def with_project(action, args, project):
    """``args`` with the project's label added, for a task that creates something (and
    for a service, whose replicas are found by it, whatever the state asked for)."""
    if action not in LABELLED or not project:
        return args
    service = action == "container" and args.get("replicas") is not None
    if not service and (args.get("state") == "absent"
                        or action == "container" and not args.get("image")):
        return args  # acts on an existing object as it is
    merged = dict(args.get("labels") or {})
    merged.setdefault(labels.PROJECT, project)
    return dict(args, labels=merged)


def playbook_hosts(playbook, inventory, limit=None):
    """The hosts any play of ``playbook`` targets, in inventory order."""
    wanted = set()
    for play in playbook.plays:
        wanted.update(inventory.select(play.hosts, limit=limit))
    return [host for host in inventory.hosts if host in wanted]


def down(inventory, hosts, projects, volumes=False, images=False, check=False, forks=32,
         on_done=None):
    """Remove ``projects``' objects on ``hosts``: {host: (removed, kept, error)} where
    removed is {containers, networks, volumes, images} (names). ``on_done(host)`` is
    called as each host finishes (progress)."""
    outcomes = {host: ({"containers": [], "networks": [], "volumes": [], "images": []}, [],
                       None) for host in hosts}
    for project in projects:
        params = {"project": project, "volumes": volumes, "images": images}
        answers = call_on_hosts(inventory, [h for h in hosts if outcomes[h][2] is None],
                                "teardown", lambda _h, p=params: p, forks, timeout=10.0,
                                check=check, on_host_done=on_done)
        for host, (result, error) in answers.items():
            removed, kept, _ = outcomes[host]
            if error is None and result.get("failed"):
                error = RuntimeError(result.get("msg"))
            for key, names in ((result or {}).get("removed") or {}).items():
                removed[key] = removed.get(key, []) + list(names)
            kept.extend((result or {}).get("kept") or [])
            outcomes[host] = (removed, kept, error)
    return outcomes
