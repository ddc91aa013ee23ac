"""Task results and the per-host tally (Ansible's PLAY RECAP)."""

from dataclasses import dataclass, field

OK, CHANGED, FAILED, SKIPPED, UNREACHABLE = "ok", "changed", "failed", "skipped", "unreachable"


@dataclass
class TaskResult:
    """One task's outcome on one host."""

    host: str
    task: str
    origin: str
    status: str
    result: dict = field(default_factory=dict)
    ignored: bool = False
    item: object = None
    action: str = ""

    @property
    def msg(self):
        return self.result.get("msg", "")


@dataclass
class HostStats:
    """Counts per host, as ansible-playbook's recap shows them."""

    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    def count(self, result):
        if result.status == UNREACHABLE:
            self.unreachable += 1
        elif result.status == SKIPPED:
            self.skipped += 1
        elif result.status == FAILED and not result.ignored:
            self.failed += 1
        else:
            if result.status == FAILED:
                self.ignored += 1
            self.ok += 1
            if result.status == CHANGED:
                self.changed += 1


def exit_code(stats):
    """ansible-playbook's exit code: 2 when a host failed, 4 when one was unreachable."""
    if any(s.failed for s in stats.values()):
        return 2
    if any(s.unreachable for s in stats.values()):
        return 4
    return 0
