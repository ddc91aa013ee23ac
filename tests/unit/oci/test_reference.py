"""Image reference parsing: Docker's forms, canonical and familiar round trips, errors."""

import pytest

from agent_payload.oci.reference import Reference, ReferenceError, parse_reference

D = "sha256:" + "0123456789abcdef" * 4

VALID = [
    ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("user/app:1.2", "docker.io", "user/app", "1.2", None, "user/app:1.2"),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", None,
     "busybox:latest"),
    ("index.docker.io/user/app", "docker.io", "user/app", "latest", None, "user/app:latest"),
    ("10.231.7.1:5000/busybox:latest", "10.231.7.1:5000", "busybox", "latest", None,
     "10.231.7.1:5000/busybox:latest"),
    ("registry.example.com/team/app:v1_2.3-rc", "registry.example.com", "team/app",
     "v1_2.3-rc", None, "registry.example.com/team/app:v1_2.3-rc"),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", None,
     "localhost:5000/a/b/c:latest"),
    ("repo@" + D, "docker.io", "library/repo", None, D, "repo@" + D),
    ("repo:tag@" + D, "docker.io", "library/repo", "tag", D, "repo:tag@" + D),
    ("ghcr.io/o/r@" + D, "ghcr.io", "o/r", None, D, "ghcr.io/o/r@" + D),
    ("a_b__c-d--e.f", "docker.io", "library/a_b__c-d--e.f", "latest", None,
     "a_b__c-d--e.f:latest"),
    ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None, "[::1]:5000/x:y"),
    ("x@sha512:" + "ab" * 64, "docker.io", "library/x", None, "sha512:" + "ab" * 64,
     "x@sha512:" + "ab" * 64),
    ("x@multihash+base58:" + "a" * 40, "docker.io", "library/x", None,
     "multihash+base58:" + "a" * 40, "x@multihash+base58:" + "a" * 40),
    ("mongo:TAG_upper", "docker.io", "library/mongo", "TAG_upper", None, "mongo:TAG_upper"),
]


@pytest.mark.parametrize("text,registry,repository,tag,digest,familiar", VALID)
def test_valid(text, registry, repository, tag, digest, familiar):
    ref = parse_reference(text)
    assert ref == Reference(registry, repository, tag, digest)
    assert ref.familiar == familiar
    assert parse_reference(str(ref)) == ref  # canonical round trip
    assert parse_reference(ref.familiar) == ref  # familiar round trip


def test_canonical_and_api_host():
    ref = parse_reference("busybox")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.short == "busybox:latest"
    other = parse_reference("10.231.7.1:5000/busybox:nope")
    assert other.api_host == "10.231.7.1:5000"
    assert other.short == "busybox:nope"
    assert str(parse_reference("repo:tag@" + D)) == "docker.io/library/repo:tag@" + D
    assert parse_reference("repo@" + D).target == D


def test_default_registry():
    ref = parse_reference("busybox:oci", default_registry="10.231.7.1:5000")
    assert ref == Reference("10.231.7.1:5000", "busybox", "oci", None)


INVALID = [
    ("Foo:bar", "repository must be lowercase"),
    ("user/App", "repository must be lowercase"),
    ("", "empty"),
    ("busybox:", "empty tag after ':'"),
    ("busybox@", "empty digest after '@'"),
    ("busybox:-x", "invalid tag '-x'"),
    ("busybox:" + "a" * 129, "invalid tag"),
    ("busybox:a+b", "invalid tag 'a+b'"),
    ("busybox@sha256:abc", "invalid sha256 digest (want 64 lowercase hex digits)"),
    ("busybox@sha256:" + "A" * 64, "invalid sha256 digest"),
    ("busybox@nocolon", "invalid digest 'nocolon'"),
    ("busybox@SHA256:" + "a" * 64, "invalid digest"),
    ("a//b", "empty path component in repository"),
    ("/busybox", "empty path component"),
    ("busybox/", "empty path component"),
    ("-busybox", "invalid repository component '-busybox'"),
    ("a..b", "invalid repository component 'a..b'"),
    ("a___b", "invalid repository component 'a___b'"),
    ("host:port/x", "invalid registry 'host:port'"),
    ("-bad.example/x", "invalid registry '-bad.example'"),
    ("busy box", "contains whitespace"),
    ("busybox\n", "contains whitespace"),
    (":tag", "missing repository name"),
    ("localhost:5000/", "missing repository name"),
    ("a/" + "b" * 260, "name longer than 255 characters"),
]


@pytest.mark.parametrize("text,why", INVALID)
def test_invalid(text, why):
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    message = str(info.value)
    assert message.startswith(f"invalid image reference {text!r}: ")
    assert why in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_lowercase_message_exact():
    with pytest.raises(ReferenceError, match=r"^invalid image reference 'Foo:bar': "
                                             r"repository must be lowercase$"):
        parse_reference("Foo:bar")
