"""The playbook executor: runs checked plays on hosts over their payload sessions."""

from fleet.executor.options import RunOptions
from fleet.executor.reporter import JsonCollector, Reporter
from fleet.executor.results import HostStats, TaskResult, exit_code
from fleet.executor.runner import run_playbook

__all__ = ["HostStats", "JsonCollector", "Reporter", "RunOptions", "TaskResult", "exit_code",
           "run_playbook"]
