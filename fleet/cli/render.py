"""Tables for the terminal: rich when a person is watching, plain aligned text otherwise
(pipes and scripts get stable columns, and skip rich's import cost)."""

import re
import sys

# Only the styles fleet itself writes are markup; anything else in brackets is text.
_MARKUP = re.compile(r"(?<!\\)\[/?(?:red|green|yellow|cyan|bold|dim)\]")


def escape(text):
    """Make ``text`` (a host's error, a path like [host]:2222) safe inside markup."""
    return str(text).replace("[", "\\[")


def _plain(text):
    return _MARKUP.sub("", str(text)).replace("\\[", "[")


class Printer:
    """Prints markup lines: through rich on a terminal, as plain text otherwise."""

    def __init__(self, terminal=None):
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.console = None
        if self.terminal:
            from rich.console import Console
            self.console = Console(highlight=False, soft_wrap=True)

    def print(self, text=""):
        if self.console is not None:
            self.console.print(text)
        else:
            sys.stdout.write(_plain(text) + "\n")


def print_table(headers, rows, right=(), notes=()):
    """Print rows under headers; ``right`` names right-aligned columns; ``notes`` are
    lines printed after the table (rich markup allowed, stripped when plain)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        table = Table(box=None, pad_edge=False)
        for header in headers:
            table.add_column(header, no_wrap=True,
                             justify="right" if header in right else "left")
        for row in rows:
            table.add_row(*row)
        console = Console(soft_wrap=True)
        console.print(table)
        for note in notes:
            console.print(note, highlight=False)
        return
    plain = [[_plain(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in plain if i < len(r)])
              for i, h in enumerate(headers)]
    for row in [list(headers)] + plain:
        cells = []
        for i, cell in enumerate(row):
            align = str.rjust if headers[i] in right else str.ljust
            cells.append(align(cell, widths[i]))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")
    for note in notes:
        sys.stdout.write(_plain(note) + "\n")
