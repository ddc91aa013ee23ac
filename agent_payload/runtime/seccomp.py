"""The container's seccomp filter, a classic BPF program built here and installed with
seccomp(2) (syscalls.seccomp_filter).

Docker's default profile allows a list of syscalls and denies the rest. This filter
keeps the same effect the other way round, which stays small: it denies, with EPERM,

- the syscalls Docker denies whatever the capabilities (kernel keyrings, userfaultfd,
  io_uring, obsolete and never-implemented calls), and
- the syscalls Docker allows only with a capability the container lacks (mount and the
  new mount API, namespaces through unshare/setns/clone flags, modules, reboot and
  kexec, the clock, swap, quotas, BPF, perf, NUMA policy...);

clone3 answers ENOSYS, as under Docker, so that libc falls back to clone, whose flags
the filter can see. A call from another ABI than the host's (i386 or x32 on x86_64)
is refused outright: the deny list is in the host's syscall numbers only.
"""

import errno
import os
import struct

# linux/seccomp.h, linux/filter.h, linux/audit.h
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
X32_SYSCALL_BIT = 0x40000000
# offsets in struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0_LOW = 0, 4, 16

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                         | 0x20000000 | 0x40000000)  # NEWNS CGROUP UTS IPC USER PID NET

# Syscall numbers (asm/unistd_64.h; asm-generic/unistd.h for aarch64). A name missing
# from an architecture does not exist there.
_X86_64 = {
    "acct": 163, "add_key": 248, "bpf": 321, "clock_adjtime": 305, "clock_settime": 227,
    "clone": 56, "clone3": 435, "create_module": 174, "delete_module": 176,
    "fanotify_init": 300, "finit_module": 313, "fsconfig": 431, "fsmount": 432,
    "fsopen": 430, "fspick": 433, "get_kernel_syms": 177, "get_mempolicy": 239,
    "init_module": 175, "io_uring_enter": 426, "io_uring_register": 427,
    "io_uring_setup": 425, "ioperm": 173, "iopl": 172, "kcmp": 312, "kexec_file_load": 320,
    "kexec_load": 246, "keyctl": 250, "lookup_dcookie": 212, "mbind": 237, "mount": 165,
    "mount_setattr": 442, "move_mount": 429, "move_pages": 279, "name_to_handle_at": 303,
    "nfsservctl": 180, "open_by_handle_at": 304, "open_tree": 428, "perf_event_open": 298,
    "pivot_root": 155, "process_vm_readv": 310, "process_vm_writev": 311,
    "query_module": 178, "quotactl": 179, "quotactl_fd": 443, "reboot": 169,
    "request_key": 249, "set_mempolicy": 238, "setns": 308, "settimeofday": 164,
    "swapoff": 168, "swapon": 167, "syslog": 103, "sysfs": 139, "_sysctl": 156,
    "umount2": 166, "unshare": 272, "uselib": 134, "userfaultfd": 323, "ustat": 136,
    "afs_syscall": 183, "tuxcall": 184, "security": 185, "getpmsg": 181, "putpmsg": 182,
    "vserver": 236,
}
_AARCH64 = {
    "acct": 89, "add_key": 217, "bpf": 280, "clock_adjtime": 266, "clock_settime": 112,
    "clone": 220, "clone3": 435, "delete_module": 106, "fanotify_init": 262,
    "finit_module": 273, "fsconfig": 431, "fsmount": 432, "fsopen": 430, "fspick": 433,
    "get_mempolicy": 236, "init_module": 105, "io_uring_enter": 426,
    "io_uring_register": 427, "io_uring_setup": 425, "kcmp": 272, "kexec_file_load": 294,
    "kexec_load": 104, "keyctl": 219, "lookup_dcookie": 18, "mbind": 235, "mount": 40,
    "mount_setattr": 442, "move_mount": 429, "move_pages": 239, "name_to_handle_at": 264,
    "nfsservctl": 42, "open_by_handle_at": 265, "open_tree": 428, "perf_event_open": 241,
    "pivot_root": 41, "process_vm_readv": 270, "process_vm_writev": 271, "quotactl": 60,
    "quotactl_fd": 443, "reboot": 142, "request_key": 218, "set_mempolicy": 237,
    "setns": 268, "settimeofday": 170, "swapoff": 225, "swapon": 224, "syslog": 116,
    "umount2": 39, "unshare": 97, "userfaultfd": 282,
}
SYSCALLS = {"x86_64": _X86_64, "aarch64": _AARCH64}

# Denied under Docker whatever the capabilities.
ALWAYS_DENIED = (
    "add_key", "keyctl", "request_key", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl",
    "create_module", "get_kernel_syms", "query_module", "afs_syscall", "tuxcall",
    "security", "getpmsg", "putpmsg", "vserver",
)
# Allowed under Docker only with one of these capabilities.
CAP_GATED = {
    "CAP_SYS_ADMIN": ("bpf", "fanotify_init", "lookup_dcookie", "mount", "umount2",
                      "pivot_root", "setns", "unshare", "name_to_handle_at", "quotactl",
                      "quotactl_fd", "fsconfig", "fsmount", "fsopen", "fspick",
                      "open_tree", "move_mount", "mount_setattr", "perf_event_open",
                      "swapon", "swapoff"),
    "CAP_SYS_BOOT": ("reboot", "kexec_load", "kexec_file_load"),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_TIME": ("settimeofday", "clock_settime", "clock_adjtime"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("process_vm_readv", "process_vm_writev", "kcmp", "userfaultfd"),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind", "move_pages"),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYSLOG": ("syslog",),
}


class SeccompError(Exception):
    """No filter can be built for this host (an architecture without a table)."""


def denied_syscalls(caps):
    """The names the filter refuses for a container holding capability names ``caps``."""
    caps = set(caps)
    names = set(ALWAYS_DENIED)
    for cap, gated in CAP_GATED.items():
        if cap not in caps:
            names.update(gated)
    if "CAP_SYS_PTRACE" in caps:
        names.discard("userfaultfd")  # moby allows it with CAP_SYS_PTRACE
    return sorted(names)


def _insn(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(caps, machine=None):
    """The BPF program (bytes of struct sock_filter) for capability names ``caps``."""
    machine = machine or os.uname().machine
    table = SYSCALLS.get(machine)
    if table is None:
        raise SeccompError(f"no seccomp syscall table for {machine}")
    deny = [table[name] for name in denied_syscalls(caps) if name in table]
    sys_admin = "CAP_SYS_ADMIN" in caps
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    # The tail every check jumps to: [allow, eperm, enosys].
    program = [_insn(BPF_LD_W_ABS, OFFSET_ARCH),
               _insn(BPF_JEQ_K, AUDIT_ARCH[machine], 1, 0),
               _insn(BPF_RET_K, eperm),
               _insn(BPF_LD_W_ABS, OFFSET_NR)]
    body = []  # (code, k, jump target name or None, ...), resolved once the length is known
    if machine == "x86_64":
        body.append(("jge", X32_SYSCALL_BIT, "eperm", None))
    body.append(("jeq", table["clone3"], "enosys", None))
    for number in deny:
        body.append(("jeq", number, "eperm", None))
    if not sys_admin:
        # clone(flags, ...): a namespace flag in the low word of its first argument
        body.append(("jeq", table["clone"], None, "skip_clone"))
        body.append(("ld_arg0",))
        body.append(("jset", CLONE_NAMESPACE_FLAGS, "eperm", None))
    tail = {"allow": len(body), "eperm": len(body) + 1, "enosys": len(body) + 2}
    for index, step in enumerate(body):
        if step[0] == "ld_arg0":
            program.append(_insn(BPF_LD_W_ABS, OFFSET_ARG0_LOW))
            continue
        kind, k, on_true, on_false = step
        code = {"jeq": BPF_JEQ_K, "jge": BPF_JGE_K, "jset": BPF_JSET_K}[kind]

        def offset(target, index=index):
            if target is None:
                return 0
            if target == "skip_clone":
                return 2  # past the argument load and its test: fall through to allow
            distance = tail[target] - index - 1
            if distance > 255:
                raise SeccompError("seccomp filter too long for 8-bit jumps")
            return distance

        program.append(_insn(code, k, offset(on_true), offset(on_false)))
    program += [_insn(BPF_RET_K, SECCOMP_RET_ALLOW), _insn(BPF_RET_K, eperm),
                _insn(BPF_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    return b"".join(program)
