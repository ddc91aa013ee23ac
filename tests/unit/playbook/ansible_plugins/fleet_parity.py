"""An ansible-playbook stdout callback for the parity tests: one JSON line per task
result, written to the file named by $FLEET_PARITY_OUT.

Each line: {"task": name, "action": action, "host": host, "status": ok|skipped|failed,
"result": the result dict}. Loaded with ANSIBLE_CALLBACK_PLUGINS pointing here and
ANSIBLE_STDOUT_CALLBACK=fleet_parity.
"""

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleet_parity
type: stdout
short_description: JSON lines of task results for fleet's parity tests
description: Writes each task result as one JSON line to $FLEET_PARITY_OUT.
"""


class CallbackModule(CallbackBase):
    """Records every task result in order."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "fleet_parity"

    def _record(self, result, status):
        line = {
            "task": result.task.get_name(),
            "action": result.task.action,
            "host": result.host.get_name(),
            "status": status,
            "result": result.result,
        }
        with open(os.environ["FLEET_PARITY_OUT"], "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
