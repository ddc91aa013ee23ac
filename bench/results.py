"""bench/RESULTS.md is shared by the bench scripts: each replaces only its own section."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(heading, lines):
    """Put ``lines`` (starting with ``heading``, a '# ' or '## ' line) in RESULTS.md,
    replacing the section that starts with the same heading prefix."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    sections = _split(text)
    new = "\n".join(lines).strip("\n") + "\n"
    for index, section in enumerate(sections):
        if section.startswith(heading):
            sections[index] = new
            break
    else:
        if heading.startswith("# "):
            sections.insert(0, new)
        else:
            sections.append(new)
    RESULTS.write_text("\n".join(s.rstrip("\n") + "\n" for s in sections))


def _split(text):
    sections, current = [], []
    for line in text.splitlines():
        if line.startswith("#") and line.split(" ", 1)[0] in ("#", "##") and current:
            sections.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        sections.append("\n".join(current))
    return sections
