"""Turn inventory hosts into SSH targets (connection variables, with their defaults)."""

import os

from fleet.transport.ssh import Target, known_hosts_from_common_args


def target_for(inventory, name, connect_timeout=10.0):
    """The Target of inventory host ``name``."""
    conn = inventory.connection(name)
    known = conn.known_hosts_file or known_hosts_from_common_args(
        inventory.host_vars(name).get("ansible_ssh_common_args"))
    return Target(
        name=name,
        host=conn.host,
        port=conn.port,
        user=conn.user,
        key_file=os.path.expanduser(conn.key_file) if conn.key_file else None,
        python=conn.python,
        become=conn.become,
        become_user=conn.become_user,
        become_password=conn.become_password,
        known_hosts=known,
        connect_timeout=connect_timeout,
    )
