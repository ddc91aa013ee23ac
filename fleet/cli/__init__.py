"""fleet's command line: thin click commands over the library, one module per verb.

Sub-commands are imported only when invoked, so ``fleet ping`` pays for paramiko but
not for the playbook engine, and ``fleet --help`` stays instant.
"""

import importlib

import click

COMMANDS = {
    "apply": ("fleet.cli.apply", "apply"),
    "down": ("fleet.cli.down", "down"),
    "scale": ("fleet.cli.apply", "scale"),
    "lab": ("fleet.cli.lab", "lab"),
    "login": ("fleet.cli.login", "login"),
    "logout": ("fleet.cli.login", "logout"),
    "ping": ("fleet.cli.ping", "ping"),
    "image": ("fleet.cli.image", "image"),
    "images": ("fleet.cli.image", "list_command"),
    "pull": ("fleet.cli.image", "pull"),
    "rmi": ("fleet.cli.image", "rm"),
    "inventory": ("fleet.cli.inventory", "inventory"),
    "run": ("fleet.cli.run", "run"),
    "ps": ("fleet.cli.containers", "ps"),
    "volume": ("fleet.cli.volume", "volume"),
    "network": ("fleet.cli.network", "network"),
    "exec": ("fleet.cli.containers", "exec_command"),
    "inspect": ("fleet.cli.containers", "inspect"),
    "logs": ("fleet.cli.containers", "logs"),
    "start": ("fleet.cli.containers", "start"),
    "restart": ("fleet.cli.containers", "restart"),
    "stop": ("fleet.cli.containers", "stop"),
    "rm": ("fleet.cli.containers", "rm"),
    "top": ("fleet.cli.containers", "top"),
}
SUMMARIES = {
    "apply": "Run a playbook on the inventory's hosts (check, diff, tags, limit).",
    "down": "Remove everything a playbook's project made, on all its hosts.",
    "scale": "Set how many replicas a playbook's services run (SERVICE=N).",
    "lab": "Simulated hosts and registries on this machine (up, down, status).",
    "login": "Store registry credentials for image pulls (like docker login).",
    "logout": "Forget a registry's stored credentials.",
    "ping": "Reach hosts over SSH, start the payload, show their facts.",
    "image": "Images in the hosts' stores: pull (with progress), ls, rm, inspect.",
    "images": "List the images on hosts (same as image ls).",
    "pull": "Pull an image onto hosts (same as image pull).",
    "rmi": "Remove an image from hosts (same as image rm).",
    "inventory": "Show an inventory as ansible-inventory does (--list, --graph, --host).",
    "run": "Run a container in the foreground on a host (like docker run --rm).",
    "ps": "List the containers on hosts (running; -a for all) and their services.",
    "volume": "Named volumes on hosts: ls, create, rm.",
    "network": "Container networks on hosts: ls, create, rm.",
    "exec": "Run a command in a running container (its namespaces and cgroup).",
    "inspect": "Print a container's docker inspect JSON (found on any host).",
    "logs": "Print a container's output, or a service's replicas' merged (-n, -t, -f).",
    "start": "Start existing containers on a host.",
    "restart": "Stop and start containers on a host.",
    "stop": "Stop containers on a host (stop signal, then SIGKILL).",
    "rm": "Remove containers from a host (-f: even running ones).",
    "top": "Show the running containers' CPU and memory (like docker stats).",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, SUMMARIES[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleet")
def main():
    """fleet: Docker-style containers on your servers, Ansible-style, no engine to install.

    \b
    Example:
      fleet lab up --hosts 3
      fleet ping -i /var/lib/fleet-lab/inventory.ini
    """
