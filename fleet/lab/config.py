"""The lab's layout: where its state lives, its addresses and names. Pure data."""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/fleet-lab"
DEFAULT_SUBNET = "10.231.0.0/24"
FIRST_HOST_OFFSET = 11
LAB_USER = "fleetuser"
LAB_UID = 2700
# A second user whose sudo asks for a password, to test become_password.
LAB_PASSWORD_USER = "fleetpass"
LAB_PASSWORD_UID = 2701
LAB_PASSWORD = "fleetlab"  # the lab is local only and sshd refuses passwords anyway
LAB_PASSWORD_HASH = ("$6$fleetlabsalt$sD3Ger.3bq8s04RCiU3JkOw3lsNX.ZuTxWH8KB8tgKqV1WCJInkdt1Cy4k"
                     "bDEcrNDv8My3rX2s4ORfhG2VWyL.")


@dataclass(frozen=True)
class LabConfig:
    """Names and paths of one lab; every object it creates starts with ``fleetlab``."""

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    subnet: str = DEFAULT_SUBNET
    # Prefix of every kernel object (links, netns, cgroup): two labs on one
    # machine (the user's and the test suite's) need different ones. At most 9
    # characters, so that its links' names (PREFIX0, PREFIXw) stay short.
    prefix: str = "fleetlab"

    @classmethod
    def from_env(cls):
        """The lab named by FLEET_LAB_DIR / FLEET_LAB_SUBNET / FLEET_LAB_PREFIX, or the default."""
        return cls(Path(os.environ.get("FLEET_LAB_DIR", DEFAULT_STATE_DIR)),
                   os.environ.get("FLEET_LAB_SUBNET", DEFAULT_SUBNET),
                   os.environ.get("FLEET_LAB_PREFIX", "fleetlab"))

    def __post_init__(self):
        if not (self.prefix.startswith("fleet") and len(self.prefix) <= 9
                and self.prefix.isalnum()):
            raise ValueError(f"lab prefix {self.prefix!r} must start with 'fleet', be "
                             "alphanumeric and at most 9 characters")

    @property
    def gateway_link(self):
        """The root namespace's port on the lab's switch; it holds the gateway address."""
        return self.prefix + "0"

    @property
    def wire(self):
        """The parent of the switch's ports (the macvlans), one end of a veth pair."""
        return self.prefix + "w"

    @property
    def wire_peer(self):
        return self.prefix + "p"

    @property
    def network(self):
        return ipaddress.ip_network(self.subnet)

    @property
    def gateway(self):
        """The lab's address in the root namespace (registries listen here)."""
        return str(self.network.network_address + 1)

    @property
    def prefixlen(self):
        return self.network.prefixlen

    @property
    def max_hosts(self):
        # Two-digit host names: lab01 … lab99.
        return max(0, min(99, self.network.num_addresses - FIRST_HOST_OFFSET - 1))

    def host_name(self, index):
        """Inventory name and hostname of the index-th host (1-based): lab01, lab02, …"""
        return f"lab{index:02d}"

    def host_address(self, index):
        return str(self.network.network_address + FIRST_HOST_OFFSET + index - 1)

    def netns(self, index):
        return f"{self.prefix}-{self.host_name(index)}"

    def cgroup_leaf(self, index):
        return f"{self.prefix}-{self.host_name(index)}"

    @property
    def hosts_dir(self):
        """Where the hosts' own directories are (the lab's disk is mounted there)."""
        return self.state_dir / "hosts"

    def host_dir(self, index):
        return self.hosts_dir / self.host_name(index)

    @property
    def inventory_path(self):
        return self.state_dir / "inventory.ini"

    @property
    def known_hosts_path(self):
        return self.state_dir / "known_hosts"

    @property
    def client_key_path(self):
        return self.state_dir / "client_key"

    @property
    def authorized_keys_path(self):
        return self.state_dir / "authorized_keys"

    @property
    def state_file(self):
        return self.state_dir / "lab.json"

    @property
    def homes(self):
        """Mount point of the lab users' homes; each host binds its own directory here."""
        return self.state_dir / "home"

    def users(self):
        """[(name, uid, home, sudo rule, shadow password field)] of the lab's non-root users."""
        return [
            (LAB_USER, LAB_UID, self.homes / LAB_USER, "NOPASSWD: ALL", "*"),
            (LAB_PASSWORD_USER, LAB_PASSWORD_UID, self.homes / LAB_PASSWORD_USER, "ALL",
             LAB_PASSWORD_HASH),
        ]

    def groups(self, count):
        """The inventory's two groups: ``web`` gets the first half (rounded up), ``db`` the rest."""
        names = [self.host_name(i) for i in range(1, count + 1)]
        half = (count + 1) // 2
        return {"web": names[:half], "db": names[half:]}
