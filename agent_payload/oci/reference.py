"""Image references as Docker users write them.

``busybox`` means ``docker.io/library/busybox:latest``; ``user/app:1.2``,
``host:port/repo:tag``, ``localhost/x``, ``repo@sha256:<hex>`` and ``repo:tag@sha256:<hex>``
are the other forms. The first path component is a registry when it contains ``.`` or
``:`` or is ``localhost`` (Docker's rule). Standard library only, python3 >= 3.8.
"""

import re
from dataclasses import dataclass
from typing import Optional

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_ALGORITHM = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*\Z")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+\Z")
_HEX = re.compile(r"[a-f0-9]+\Z")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    r"(?:" + _HOST_LABEL + r"(?:\." + _HOST_LABEL + r")*|\[[a-fA-F0-9:.]+\])(?::[0-9]+)?\Z")
_KNOWN_DIGESTS = {"sha256": 64, "sha512": 128}


class ReferenceError(ValueError):  # noqa: A001 - the name the callers use
    """An image reference that does not parse; str() is one line naming it."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``tag`` and ``digest`` may each be None, not both."""

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    def __str__(self) -> str:
        """The canonical form ``registry/repository:tag@digest``."""
        return self.registry + "/" + self.short_in_registry

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return self.registry + "/" + self.repository

    @property
    def suffix(self) -> str:
        """``:tag@digest`` with whatever is present."""
        text = ""
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text

    @property
    def short_in_registry(self) -> str:
        """``repository:tag@digest`` (the repository as the registry names it)."""
        return self.repository + self.suffix

    @property
    def short(self) -> str:
        """The reference inside its registry as a user would say it (``busybox:latest``).

        ``library/`` is dropped on Docker Hub; the registry itself is left out, for
        messages that name it separately.
        """
        repository = self.repository
        if self.registry == DOCKER_HUB and repository.startswith("library/"):
            repository = repository[len("library/"):]
        return repository + self.suffix

    @property
    def familiar(self) -> str:
        """The short Docker form: ``busybox:latest``, ``user/app:1.2``, ``host:5000/x:y``."""
        if self.registry == DOCKER_HUB:
            return self.short
        return str(self)

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the registry API (Docker Hub's differs)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def target(self) -> str:
        """What goes after ``/manifests/``: the digest when known, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG


def _fail(text: str, why: str) -> ReferenceError:
    return ReferenceError(f"invalid image reference {text!r}: {why}")


def _check_digest(text: str, digest: str) -> None:
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not _ALGORITHM.match(algorithm) or not _ENCODED.match(encoded):
        raise _fail(text, f"invalid digest {digest!r} (want algorithm:hex)")
    want = _KNOWN_DIGESTS.get(algorithm)
    if want is not None and (len(encoded) != want or not _HEX.match(encoded)):
        raise _fail(text, f"invalid {algorithm} digest (want {want} lowercase hex digits)")


def is_registry_host(text: str) -> bool:
    """True when ``text`` is a registry ``host[:port]`` by Docker's domain rule."""
    looks_like_host = "." in text or ":" in text or text == "localhost"
    return bool(looks_like_host and _DOMAIN.match(text))


def parse_reference(text: str, default_registry: Optional[str] = None) -> Reference:
    """Parse ``text`` into a Reference, raising ReferenceError with a one-line message.

    ``default_registry`` replaces Docker Hub for names without a registry part (the
    ``library/`` prefix is added on Docker Hub only).
    """
    if not isinstance(text, str):
        raise ReferenceError(f"invalid image reference {text!r}: not a string")
    if not text:
        raise _fail(text, "empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise _fail(text, "contains whitespace")
    rest, at, digest = text.partition("@")
    digest_value: Optional[str] = None
    if at:
        if not digest:
            raise _fail(text, "empty digest after '@'")
        _check_digest(text, digest)
        digest_value = digest
    tag: Optional[str] = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not tag:
            raise _fail(text, "empty tag after ':'")
        if not _TAG.match(tag):
            raise _fail(text, f"invalid tag {tag!r}")
    if not rest:
        raise _fail(text, "missing repository name")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.match(first):
            raise _fail(text, f"invalid registry {first!r}")
        registry, repository = first, remainder
    else:
        registry, repository = default_registry or DOCKER_HUB, rest
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if not repository:
        raise _fail(text, "missing repository name")
    if repository != repository.lower():
        raise _fail(text, "repository must be lowercase")
    for component in repository.split("/"):
        if not component:
            raise _fail(text, "empty path component in repository")
        if not _COMPONENT.match(component):
            raise _fail(text, f"invalid repository component {component!r}")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = "library/" + repository
    if len(registry) + 1 + len(repository) > MAX_NAME:
        raise _fail(text, f"name longer than {MAX_NAME} characters")
    if tag is None and digest_value is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest_value)
