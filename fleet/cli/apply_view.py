"""What `fleet apply` shows: a line per host per task, a live view on a terminal, and
the PLAY RECAP."""

import difflib
import json
import threading

from fleet.cli.render import Printer, escape
from fleet.executor import Reporter

STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "skipped": "cyan",
         "unreachable": "red"}


class TextReporter(Reporter):
    """Prints results as they come; on a terminal a live line shows the running task."""

    def __init__(self, options, live):
        self.options = options
        self.console = Printer(live)
        self.lock = threading.Lock()
        self.live = None
        self.task_name = ""
        self.expected = 0
        self.done = 0
        self.states = {}  # host -> status of the running task ("" while pending)
        if live:
            from rich.live import Live
            self.live = Live("", console=self.console.console, transient=True,
                             refresh_per_second=8)
            self.live.start()

    def close(self):
        if self.live is not None:
            self.live.stop()

    def _status(self):
        """The live region: the running task, then every host of it coloured by state."""
        if self.live is None:
            return
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text
        hosts = Text()
        for host, status in self.states.items():
            hosts.append(host + " ", style=STYLE.get(status, "dim"))
        self.live.update(Group(Spinner("dots", f" {escape(self.task_name)}: "
                                               f"{self.done}/{self.expected} hosts"), hosts))

    def _start(self, name, hosts, heading):
        with self.lock:
            self.task_name = name
            self.expected, self.done = len(hosts), 0
            self.states = {host: "" for host in hosts}
            self.console.print(f"[bold]{heading} {escape(f'[{name}]')}[/bold]")
            self._status()

    def play_start(self, play, hosts):
        self.console.print(f"\n[bold]PLAY {escape(f'[{play.name}]')}[/bold] "
                           f"({len(hosts)} host{'s' if len(hosts) != 1 else ''})")

    def task_start(self, task, hosts):
        self._start(task.name or task.action, hosts, "TASK")

    def handler_start(self, handler, hosts):
        self._start(handler.name or handler.action, hosts, "RUNNING HANDLER")

    def host_result(self, result):
        status = result.status
        label = "...ignoring" if result.ignored else ""
        line = f"[{STYLE[status]}]{status}: {escape(f'[{result.host}]')}[/{STYLE[status]}]"
        if status in ("failed", "unreachable"):
            line += f" {escape(result.msg or json.dumps(result.result)[:300])}"
        elif result.action == "debug" and status == "ok":
            shown = {k: v for k, v in result.result.items() if k not in ("changed", "failed")}
            line += f" => {escape(json.dumps(shown, default=str))}"
        if label:
            line += f" {label}"
        with self.lock:
            self.done += 1
            self.states[result.host] = status
            self.console.print(line)
            if self.options.verbosity:
                self.console.print(escape(json.dumps(result.result, indent=2, default=str)))
            if self.options.diff and result.result.get("diff"):
                self._print_diff(result.result["diff"])
            self._status()

    def _print_diff(self, diffs):
        for diff in diffs if isinstance(diffs, list) else [diffs]:
            before, after = diff.get("before", ""), diff.get("after", "")
            if isinstance(before, str) and isinstance(after, str):
                lines = difflib.unified_diff(
                    before.splitlines(True), after.splitlines(True),
                    diff.get("before_header", "before"), diff.get("after_header", "after"))
                for line in lines:
                    color = "green" if line.startswith("+") else (
                        "red" if line.startswith("-") else "")
                    text = escape(line.rstrip("\n"))
                    self.console.print(f"[{color}]{text}[/{color}]" if color else text)
            else:
                self.console.print(escape(json.dumps(diff, default=str)))

    def run_end(self, stats):
        if self.live is not None:
            self.live.stop()
            self.live = None
        self.console.print("\n[bold]PLAY RECAP[/bold]")
        width = max((len(h) for h in stats), default=4)
        for host, s in stats.items():
            color = "red" if s.failed or s.unreachable else ("yellow" if s.changed else "green")
            self.console.print(
                f"[{color}]{escape(host):<{width}}[/{color}] : ok={s.ok:<4} "
                f"changed={s.changed:<4} unreachable={s.unreachable:<4} "
                f"failed={s.failed:<4} skipped={s.skipped:<4} rescued={s.rescued:<4} "
                f"ignored={s.ignored}")

