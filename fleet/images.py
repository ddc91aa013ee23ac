"""Images across hosts: pull, list and remove through each host's payload session.

The registry settings a host needs come from its inventory variables
(``fleet_insecure_registries``: a list or comma-separated string; ``fleet_registry_ca_file``)
and the credentials from ``fleet login``; none of them is ever part of a result.
"""

from dataclasses import dataclass, field

from fleet.remote import call_on_hosts


@dataclass
class HostOutcome:
    """One host's answer to an image request (or why there was none)."""

    host: str
    ok: bool
    changed: bool = False
    msg: str = ""
    images: list = field(default_factory=list)


def registry_params(inventory, host):
    """The image module's registry parameters for ``host`` from its inventory vars."""
    variables = inventory.host_vars(host)
    insecure = variables.get("fleet_insecure_registries") or []
    if isinstance(insecure, str):
        insecure = [item.strip() for item in insecure.split(",") if item.strip()]
    params = {"insecure_registries": list(insecure)}
    if variables.get("fleet_registry_ca_file"):
        params["ca_file"] = variables["fleet_registry_ca_file"]
    return params


def _login_for(name):
    from agent_payload.oci.reference import ReferenceError, parse_reference
    from fleet.credentials import lookup
    try:
        login = lookup(parse_reference(name).registry)
    except ReferenceError:
        return None
    return {"username": login[0], "password": login[1]} if login else None


def run_on_hosts(inventory, hosts, module, params_for, forks=32, timeout=10.0, on_event=None):
    """Call ``module`` with ``params_for(host)`` on every host; return HostOutcomes in order.

    ``on_event(host, event)`` receives the module's progress events as they come.
    """

    outcomes = []
    for host, (result, error) in call_on_hosts(inventory, hosts, module, params_for, forks,
                                               timeout, on_event).items():
        if error is not None:
            outcomes.append(HostOutcome(host, False, msg=str(error)))
            continue
        outcomes.append(HostOutcome(
            host, not result.get("failed"), bool(result.get("changed")),
            result.get("msg", ""),
            result.get("images") or ([result["image"]] if result.get("image") else [])))
    return outcomes


def pull(inventory, hosts, name, platform=None, always=False, **kwargs):
    """Pull image ``name`` on every host."""
    login = _login_for(name)

    def params(host):
        p = dict(registry_params(inventory, host), name=name,
                 pull="always" if always else "missing")
        if platform:
            p["platform"] = platform
        if login:
            p["registry_auth"] = login
        return p

    return run_on_hosts(inventory, hosts, "image", params, **kwargs)


def remove(inventory, hosts, name, force=False, **kwargs):
    """Remove image ``name`` from every host's store.

    A host where a container uses the image refuses (its outcome fails) unless ``force``:
    then the image loses its names there and stays for the container.
    """
    return run_on_hosts(inventory, hosts, "image",
                        lambda host: {"name": name, "state": "absent", "force": force},
                        **kwargs)


def list_images(inventory, hosts, **kwargs):
    """Every image in every host's store."""
    return run_on_hosts(inventory, hosts, "image_info", lambda host: {}, **kwargs)
