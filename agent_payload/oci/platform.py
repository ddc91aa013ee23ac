"""The host's platform as OCI names it, and the choice of a manifest from an index.

OCI and Docker use Go's names: os ``linux``, architecture ``amd64``, ``arm64``, ``arm``,
``386``, ``ppc64le``, ``s390x``, ``riscv64``; ``arm`` carries a variant (``v6``, ``v7``)
and ``arm64`` means ``v8`` when no variant is given. Standard library only.
"""

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

# uname -m → (GOARCH, variant)
_MACHINES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v7"),  # 32-bit userland on a 64-bit core
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "loongarch64": ("loong64", None),
}
# Names users type for an architecture, mapped to GOARCH.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64",
                 "i386": "386", "i686": "386", "armhf": "arm", "armel": "arm"}
_ARCH_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
_ALIAS_VARIANT = {"armhf": "v7", "armel": "v6"}


class PlatformError(ValueError):
    """No usable platform; str() is one line."""


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os``, ``architecture`` and an optional ``variant``."""

    os: str
    architecture: str
    variant: Optional[str] = None

    def __str__(self) -> str:
        """``os/architecture[/variant]``."""
        text = f"{self.os}/{self.architecture}"
        return text + "/" + self.variant if self.variant else text

    def normalized(self) -> "Platform":
        """The same platform with aliases resolved and the default variant filled in."""
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant or _ALIAS_VARIANT.get(self.architecture)
        variant = variant or _ARCH_DEFAULT_VARIANT.get(arch)
        return Platform(self.os.lower(), arch, variant)


def platform_for_machine(machine: str, system: str = "linux") -> Platform:
    """Map a ``uname -m`` machine name to the OCI platform, e.g. ``armv7l`` → linux/arm/v7."""
    try:
        arch, variant = _MACHINES[machine]
    except KeyError:
        raise PlatformError(f"unknown machine architecture {machine!r}") from None
    return Platform(system, arch, variant)


def host_platform(machine: Optional[str] = None) -> Platform:
    """The platform of this host (``machine`` overrides ``os.uname().machine``)."""
    return platform_for_machine(machine if machine is not None else os.uname().machine)


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]`` (e.g. ``linux/arm64/v8``) into a normalized Platform."""
    parts = text.strip().split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(parts):
        raise PlatformError(f"invalid platform {text!r} (want os/architecture[/variant])")
    return Platform(*parts).normalized()


def _of(descriptor: dict) -> Optional[Platform]:
    spec = descriptor.get("platform") if isinstance(descriptor, dict) else None
    if not isinstance(spec, dict):
        return None
    system, arch = spec.get("os"), spec.get("architecture")
    if not isinstance(system, str) or not isinstance(arch, str):
        return None
    variant = spec.get("variant")
    return Platform(system, arch, variant if isinstance(variant, str) and variant else None)


def _arm_level(variant: Optional[str]) -> Optional[int]:
    if variant and variant[0] == "v" and variant[1:].isdigit():
        return int(variant[1:])
    return None


def _score(have: Platform, want: Platform, explicit_variant: bool) -> Optional[int]:
    """How well ``have`` serves ``want`` (higher is better), None when it cannot."""
    if have.os != want.os or have.architecture != want.architecture:
        return None
    if have.variant == want.variant:
        return 100
    if want.architecture == "arm":
        # A newer arm core runs older variants: v7 runs v6 and v5 images.
        have_level, want_level = _arm_level(have.variant), _arm_level(want.variant)
        if have_level is not None and want_level is not None and have_level <= want_level:
            return 50 + have_level
        return None
    return None if explicit_variant else 10


def choose_manifest(manifests: Sequence[dict], wanted, reference: str = "") -> dict:
    """Pick the descriptor from an OCI index / Docker manifest list that suits ``wanted``.

    ``wanted`` is a Platform or ``os/arch[/variant]`` text. An exact variant match wins;
    ``arm64`` without a variant counts as ``v8``. Raises PlatformError listing the
    available platforms when nothing fits, naming ``reference``.
    """
    want = (parse_platform(wanted) if isinstance(wanted, str) else wanted).normalized()
    explicit = want.architecture not in _ARCH_DEFAULT_VARIANT and want.variant is not None
    best, best_score = None, -1
    available: List[str] = []
    for descriptor in manifests or ():
        have = _of(descriptor)
        if have is None:
            continue
        have = have.normalized()
        if have.os != "unknown" and str(have) not in available:
            available.append(str(have))  # "unknown/unknown" are attestations
        score = _score(have, want, explicit)
        if score is not None and score > best_score:
            best, best_score = descriptor, score
    if best is None:
        shown = ", ".join(available) if available else "none"
        subject = f" for {reference}" if reference else ""
        raise PlatformError(f"no {want} image{subject} (available: {shown})")
    return best
