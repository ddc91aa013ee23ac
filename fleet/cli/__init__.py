"""fleet's command line: thin click commands over the library, one module per verb.

Sub-commands are imported only when invoked, so ``fleet ping`` pays for paramiko but
not for the playbook engine, and ``fleet --help`` stays instant.
"""

import atexit
import gc
import importlib
import os
import sys
import threading

# A command imports some 400 modules before it does any work, and the collector's default
# thresholds ran a dozen full collections over that growing heap (about 8 ms before the
# first connection). Fewer, larger young collections keep memory bounded just the same.
gc.set_threshold(50_000, 20, 10)

import click  # noqa: E402 - after the collector's settings, which its import already uses

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
    "sessions": ("fleet.cli.sessions", "sessions"),
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
    "sessions": "SSH sessions kept between commands (ControlPersist): ls, close.",
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


def run():
    """The ``fleet`` console script: run the command, then leave without the teardown.

    A finished command has nothing left to do but exit, and the interpreter's own
    teardown (freeing every module and object, paramiko's among them) took about 60 ms
    after a 32-host apply. So once the command's result is out: join the remaining
    non-daemon threads, run the atexit handlers, flush the standard streams and exit at
    once. A crash still goes through the normal path, traceback and all.
    """
    try:
        main()  # click's standalone mode always ends in SystemExit
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)
