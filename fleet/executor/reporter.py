"""The executor's events, for whoever shows them (the CLI's live view, the JSON document).

Library code never prints: the executor calls a Reporter, the CLI decides what to do.
"""


class Reporter:
    """Receives the run's events; every method may be left as is."""

    def play_start(self, play, hosts):
        pass

    def task_start(self, task, hosts):
        pass

    def host_result(self, result):
        pass

    def handler_start(self, handler, hosts):
        pass

    def progress(self, host, task, event):
        pass

    def run_end(self, stats):
        pass


class JsonCollector(Reporter):
    """Builds one JSON document of every task result per host (like Ansible's json callback)."""

    def __init__(self):
        self.plays = []

    def play_start(self, play, hosts):
        self.plays.append({"play": {"name": play.name, "origin": str(play.origin),
                                    "hosts": list(hosts)}, "tasks": []})

    def task_start(self, task, hosts):
        entry = {"task": {"name": task.name or task.action, "action": task.action,
                          "origin": str(task.origin)}, "hosts": {}}
        self.plays[-1]["tasks"].append(entry)

    handler_start = task_start

    def host_result(self, result):
        for entry in reversed(self.plays[-1]["tasks"] if self.plays else []):
            if entry["task"]["origin"] == result.origin:
                entry["hosts"][result.host] = dict(result.result, status=result.status,
                                                   ignored=result.ignored)
                return

    def document(self, stats):
        return {"plays": self.plays,
                "stats": {host: vars(s) for host, s in stats.items()}}
