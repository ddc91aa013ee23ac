"""What a container runs, planned from the image's config and the user's options, as
Docker plans it; nothing here touches the host.

- ``process_argv``: Entrypoint + Cmd, overridden by ``entrypoint`` / ``command``.
- ``environment``: the image's Env, then ``env``; PATH and HOSTNAME as Docker sets them,
  HOME from the user's passwd entry when neither sets it.
- ``resolve_user``: ``name``, ``uid``, ``name:group``, ``uid:gid`` against the image's
  /etc/passwd and /etc/group texts, with supplementary groups.
- ``capabilities``: Docker's default set, ``cap_add`` / ``cap_drop`` (``ALL`` too),
  ``privileged``.
- ``parse_bytes``: Docker's memory sizes ("512m", "1g", 1048576).
- ``MASKED_PATHS`` / ``READONLY_PATHS``: what runc masks and remounts read-only.
- ``hosts_file`` / ``resolv_conf``: the generated /etc/hosts and /etc/resolv.conf.
- ``parse_volume``: ``/host:/ctr[:ro]``, ``name:/ctr[:ro]`` and anonymous ``/ctr``.
- ``parse_ulimit``: docker's ``--ulimit NAME=SOFT[:HARD]``.

Each error is ``SpecError`` with a one-line message naming the option.
"""


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set (moby's oci/caps/defaults.go).
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# Every capability by number (linux/capability.h), for capset and the bounding set.
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# What runc masks (bind-mounts /dev/null or an empty read-only tmpfs over) and what it
# remounts read-only, as current Docker configures a non-privileged container.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class SpecError(Exception):
    """An option cannot be honoured; str() is the one-line reason."""


def words(value, option):
    """A list option given as a list, or as a string split like a shell (not run by one)."""
    if value is None:
        return None
    if isinstance(value, str):
        import shlex  # the launcher imports this module too, and needs no parsing

        try:
            return shlex.split(value)
        except ValueError as exc:
            raise SpecError(f"{option}: cannot split {value!r}: {exc}") from None
    return [str(word) for word in value]


def process_argv(image_config, entrypoint=None, command=None):
    """The argv the container starts with.

    As docker run: ``entrypoint`` replaces the image's Entrypoint and drops its Cmd;
    ``command`` replaces Cmd. An empty entrypoint ("" or []) means none.
    """
    image_entry = list(image_config.get("Entrypoint") or [])
    image_cmd = list(image_config.get("Cmd") or [])
    entry = words(entrypoint, "entrypoint")
    cmd = words(command, "command")
    if entry is not None:
        image_entry, image_cmd = entry, []
    if cmd is not None:
        image_cmd = cmd
    argv = image_entry + image_cmd
    if not argv:
        raise SpecError("no command: the image has no Entrypoint or Cmd and none was given")
    return argv


def _env_pairs(items, option):
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not name or not sep:
            raise SpecError(f"{option}: {item!r} is not NAME=value")
        pairs.append((name, value))
    return pairs


def environment(image_config, env=None, hostname=None, home=None):
    """The container's environment as a list of "NAME=value", Docker's order kept."""
    merged = {}
    for name, value in _env_pairs(image_config.get("Env") or [], "image Env"):
        merged[name] = value
    if isinstance(env, dict):
        given = [(str(k), "" if v is None else str(v)) for k, v in env.items()]
    else:
        given = _env_pairs(env or [], "env")
    for name, value in given:
        if not name or "=" in name:
            raise SpecError(f"env: {name!r} is not a valid variable name")
        merged[name] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    if hostname:
        merged.setdefault("HOSTNAME", hostname)
    if home:
        merged.setdefault("HOME", home)
    return [f"{name}={value}" for name, value in merged.items()]


def _table(text):
    """Rows of a colon-separated file (passwd, group), comments and blanks skipped."""
    rows = []
    for line in (text or "").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user, passwd_text, group_text):
    """(uid, gid, supplementary gids, home) for ``user`` in the image; root when empty.

    ``user`` is "name", "uid", "name:group", "uid:gid" (names looked up in the image's
    /etc/passwd and /etc/group; numbers taken as they are, as Docker does).
    """
    spec = (user or "").strip()
    if not spec:
        spec = "0"
    name_part, _, group_part = spec.partition(":")
    users = [row for row in _table(passwd_text) if len(row) >= 6]
    groups = [row for row in _table(group_text) if len(row) >= 3]
    entry = None
    for row in users:
        if row[0] == name_part or (name_part.isdigit() and row[2] == name_part):
            entry = row
            break
    if entry is None and not name_part.isdigit():
        raise SpecError(f"user: unable to find user {name_part}: no matching entries "
                        "in passwd file")
    uid = int(entry[2]) if entry else int(name_part)
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry and entry[5] else "/"
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            match = [row for row in groups if row[0] == group_part]
            if not match:
                raise SpecError(f"user: unable to find group {group_part}: no matching "
                                "entries in group file")
            gid = int(match[0][2])
    supplementary = []
    if entry is not None and not group_part:
        for row in groups:
            members = row[3].split(",") if len(row) > 3 and row[3] else []
            if entry[0] in members and row[2].isdigit() and int(row[2]) != gid:
                supplementary.append(int(row[2]))
    return uid, gid, sorted(set(supplementary)), home


def _cap_name(name, option):
    text = str(name).strip().upper()
    if text == "ALL":
        return text
    if not text.startswith("CAP_"):
        text = "CAP_" + text
    if text not in CAP_NUMBERS:
        raise SpecError(f"{option}: unknown capability {name!r}")
    return text


def capabilities(cap_add=None, cap_drop=None, privileged=False):
    """The container's capability names, sorted by number."""
    if privileged:
        return sorted(CAP_NUMBERS, key=CAP_NUMBERS.get)
    adds = [_cap_name(c, "cap_add") for c in cap_add or []]
    drops = [_cap_name(c, "cap_drop") for c in cap_drop or []]
    caps = set(DEFAULT_CAPS)
    if "ALL" in drops:
        caps = set()
    caps -= set(drops)
    if "ALL" in adds:
        caps = set(CAP_NUMBERS)
    caps |= {c for c in adds if c != "ALL"}
    return sorted(caps, key=CAP_NUMBERS.get)


def parse_bytes(value, option):
    """Docker's size notation ("512m", "1g", "100k", or a plain number of bytes)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SpecError(f"{option}: {value!r} is not a size")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == "-1":
        return -1
    unit = 1
    if text.endswith("b") and len(text) > 1 and text[-2] in _UNITS and text[-2] != "b":
        text = text[:-1]  # "512mb" as "512m"
    if text and text[-1] in _UNITS:
        unit = _UNITS[text[-1]]
        text = text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise SpecError(f"{option}: {value!r} is not a size (use e.g. 512m or 1g)") from None
    if number < 0:
        raise SpecError(f"{option}: {value!r} is negative")
    return int(number * unit)


def hosts_file(hostname, address=None, extra=()):
    """/etc/hosts for the container: localhost, its own name, then (name, address) extras."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    if address:
        lines.append(f"{address}\t{hostname}")
    for names, where in extra:
        lines.append(f"{where}\t{names}")
    return "\n".join(lines) + "\n"


def resolv_conf(host_text, network_mode="bridge"):
    """The container's /etc/resolv.conf from the host's, as Docker writes it.

    With the host's network the file is the host's. Otherwise loopback nameservers
    (a local resolver the container cannot reach) are left out; none left, it falls back
    to Google's public resolvers as Docker does.
    """
    if network_mode == "host":
        return host_text
    kept, servers = [], 0
    for line in (host_text or "").splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if words[1].startswith("127.") or words[1] == "::1":
                continue
            servers += 1
        kept.append(line)
    if not servers:
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


_VOLUME_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_VOLUME_NAME_REST = _VOLUME_NAME_FIRST | frozenset("_.-")


def _volume_name(text):
    """Docker's volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (no re: the launcher imports
    this module)."""
    return (len(text) >= 2 and text[0] in _VOLUME_NAME_FIRST
            and all(c in _VOLUME_NAME_REST for c in text[1:]))


def parse_volume(text):
    """One ``volumes`` entry as docker run -v reads it: {"type": "bind" | "volume",
    "source" (a host path, a volume name, or None for an anonymous volume), "target",
    "readonly"}."""
    parts = str(text).split(":")
    mode = "rw"
    if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
        mode = parts.pop()
    if mode not in ("ro", "rw") or len(parts) > 2 or not all(parts):
        raise SpecError(f"volumes: {text!r} is not SOURCE:TARGET[:ro|rw] or TARGET")
    source, target = (None, parts[0]) if len(parts) == 1 else parts
    if not target.startswith("/"):
        raise SpecError(f"volumes: {text!r}: the container path must be absolute")
    if ".." in target.split("/"):
        raise SpecError(f"volumes: {text!r}: the container path may not contain '..'")
    if source is None:
        kind = "volume"
    elif source.startswith("/"):
        kind = "bind"
    elif _volume_name(source):
        kind = "volume"
    else:
        raise SpecError(f"volumes: {source!r} is neither an absolute host path nor a volume "
                        "name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")
    return {"type": kind, "source": source, "target": target.rstrip("/") or "/",
            "readonly": mode == "ro"}


ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimit(text):
    """docker's --ulimit NAME=SOFT[:HARD] as (name, soft, hard); -1 means unlimited."""
    name, sep, values = str(text).partition("=")
    name = name.strip().lower()
    if not sep or name not in ULIMITS:
        raise SpecError(f"ulimits: {text!r} is not NAME=SOFT[:HARD] with NAME one of "
                        f"{', '.join(ULIMITS)}")
    soft, _, hard = values.partition(":")
    try:
        soft_n = int(soft)
        hard_n = int(hard) if hard else soft_n
    except ValueError:
        raise SpecError(f"ulimits: {text!r}: the limits must be numbers") from None
    if -1 not in (soft_n, hard_n) and soft_n > hard_n:
        raise SpecError(f"ulimits: {text!r}: the soft limit is above the hard one")
    return name, soft_n, hard_n


def parse_port(text):
    """One ``ports`` entry as docker run -p reads it: [[HOST_IP:]HOST_PORT:]PORT[/PROTO];
    a missing host port (or 0) means a free one. Returns {host_ip, host_port, port,
    proto}."""
    body, _, proto = str(text).partition("/")
    proto = proto or "tcp"
    parts = body.split(":")
    if proto not in ("tcp", "udp") or not 1 <= len(parts) <= 3:
        raise SpecError(f"ports: {text!r} is not [[HOST_IP:]HOST_PORT:]PORT[/tcp|udp]")
    host_ip = parts[0] if len(parts) == 3 else ""
    host_port = parts[-2] if len(parts) >= 2 else "0"
    try:
        port, host = int(parts[-1]), int(host_port or "0")
    except ValueError:
        raise SpecError(f"ports: {text!r}: ports are numbers") from None
    if not 0 < port < 65536 or not 0 <= host < 65536:
        raise SpecError(f"ports: {text!r}: ports are 1 to 65535")
    return {"host_ip": host_ip, "host_port": host, "port": port, "proto": proto}


def link_env(alias, linker, address, exposed, target_env, published=None):
    """Docker's legacy link variables for target ``alias`` at ``address``: ALIAS_PORT,
    ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO], ALIAS_NAME, ALIAS_ENV_<VAR> (the
    target's environment but HOME and PATH). ``exposed``: ["5432/tcp", ...];
    ``published`` ({"5432/tcp": "15432"}, a target on another host): the port each one
    is reached on at ``address``, named after the exposed port as Docker names them."""
    published = published or {}
    prefix = "".join(c if c.isalnum() else "_" for c in alias).upper()
    env = [f"{prefix}_NAME=/{linker}/{alias}"]
    ports = sorted(exposed, key=lambda p: (int(p.split("/")[0]), p))
    if ports:
        first, proto = ports[0].split("/") if "/" in ports[0] else (ports[0], "tcp")
        reached = published.get(ports[0], first)
        env.append(f"{prefix}_PORT={proto}://{address}:{reached}")
    for entry in ports:
        port, proto = entry.split("/") if "/" in entry else (entry, "tcp")
        reached = published.get(entry, port)
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [f"{key}={proto}://{address}:{reached}", f"{key}_ADDR={address}",
                f"{key}_PORT={reached}", f"{key}_PROTO={proto}"]
    for item in target_env:
        name, _, value = item.partition("=")
        if name not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{name}={value}")
    return env
