"""The seccomp filter and the capability sets, built here and applied for real in a
forked child of the test (which then reports through a pipe and exits)."""

import ctypes
import errno
import json
import os
import struct

import pytest

from agent_payload import syscalls
from agent_payload.runtime import caps, seccomp, spec

ROOT = os.geteuid() == 0
MACHINE = os.uname().machine
real = pytest.mark.skipif(not ROOT or MACHINE not in seccomp.SYSCALLS,
                          reason="needs root on x86_64 or aarch64")
DOCKER_CAPEFF = 0x00000000A80425FB  # what `grep CapEff /proc/self/status` shows under Docker


def in_child(work):
    """Run ``work()`` in a forked child; return what it returned (JSON) or its error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            outcome = {"ok": work()}
        except BaseException as exc:  # reported to the parent
            outcome = {"error": repr(exc)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    outcome = json.loads(data)
    if "error" in outcome:
        raise AssertionError(outcome["error"])
    return outcome["ok"]


def _raw_syscall(number, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return 0 if result != -1 else ctypes.get_errno()


def _status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    return None


def test_denied_syscalls_follow_the_capabilities():
    default = seccomp.denied_syscalls(spec.capabilities())
    for name in ("keyctl", "add_key", "mount", "unshare", "setns", "init_module", "reboot",
                 "io_uring_setup", "bpf", "settimeofday"):
        assert name in default
    admin = seccomp.denied_syscalls(spec.capabilities(cap_add=["SYS_ADMIN"]))
    assert "mount" not in admin and "unshare" not in admin and "keyctl" in admin


@pytest.mark.parametrize("machine", sorted(seccomp.SYSCALLS))
def test_filter_program_shape(machine):
    program = seccomp.build_filter(spec.capabilities(), machine)
    assert len(program) % 8 == 0
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    assert insns[0] == (seccomp.BPF_LD_W_ABS, 0, 0, seccomp.OFFSET_ARCH)
    assert insns[1][3] == seccomp.AUDIT_ARCH[machine]
    assert insns[-3:] == [(seccomp.BPF_RET_K, 0, 0, seccomp.SECCOMP_RET_ALLOW),
                          (seccomp.BPF_RET_K, 0, 0, seccomp.SECCOMP_RET_ERRNO | errno.EPERM),
                          (seccomp.BPF_RET_K, 0, 0, seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS)]
    for index, (code, jt, jf, _) in enumerate(insns):  # every jump lands inside
        if code in (seccomp.BPF_JEQ_K, seccomp.BPF_JGE_K, seccomp.BPF_JSET_K):
            assert index + 1 + max(jt, jf) < len(insns)


def test_unknown_machine_is_an_error():
    with pytest.raises(seccomp.SeccompError, match="no seccomp syscall table for mips"):
        seccomp.build_filter([], "mips")


@real
def test_filter_denies_what_root_could_otherwise_do():
    table = seccomp.SYSCALLS[MACHINE]

    def work():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        syscalls.seccomp_filter(seccomp.build_filter(spec.capabilities(), MACHINE))
        pid = os.fork()  # clone without namespace flags still works
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return {"unshare": _raw_syscall(table["unshare"], 0x04000000),
                "keyctl": _raw_syscall(table["keyctl"], 0, 0, 0),
                "clone_newuts": _raw_syscall(table["clone"], 0x04000000 | 17, 0, 0, 0, 0),
                "clone3": _raw_syscall(table["clone3"], 0, 0),
                "getpid": _raw_syscall(39 if MACHINE == "x86_64" else 172),
                "fork_status": os.WEXITSTATUS(status)}

    got = in_child(work)
    assert got == {"unshare": errno.EPERM, "keyctl": errno.EPERM,
                   "clone_newuts": errno.EPERM, "clone3": errno.ENOSYS, "getpid": 0,
                   "fork_status": 7}


@real
def test_docker_default_capabilities_applied():
    def work():
        caps.apply(spec.capabilities(), no_new_privileges=True)
        return {field: _status(field) for field in ("CapEff", "CapPrm", "CapBnd", "CapInh",
                                                    "CapAmb", "NoNewPrivs")}

    got = in_child(work)
    assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == DOCKER_CAPEFF
    assert got["CapInh"] == 0 and got["CapAmb"] in (0, None) and got["NoNewPrivs"] == 1
    assert caps.mask_of(spec.capabilities()) == DOCKER_CAPEFF
