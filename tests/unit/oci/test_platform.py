"""Host platform names and manifest choice from an OCI index / Docker manifest list."""

import pytest

from agent_payload.oci.platform import (
    Platform,
    PlatformError,
    choose_manifest,
    host_platform,
    parse_platform,
)


@pytest.mark.parametrize("machine,expected", [
    ("x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64/v8"),
    ("armv7l", "linux/arm/v7"),
    ("armv6l", "linux/arm/v6"),
    ("i686", "linux/386"),
    ("ppc64le", "linux/ppc64le"),
    ("s390x", "linux/s390x"),
    ("riscv64", "linux/riscv64"),
])
def test_uname_mapping(machine, expected):
    assert str(host_platform(machine)) == expected


def test_unknown_machine():
    with pytest.raises(PlatformError, match="unknown machine architecture 'vax'"):
        host_platform("vax")


def test_host_platform_default():
    assert host_platform().os == "linux"


@pytest.mark.parametrize("text,expected", [
    ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
    ("linux/arm64", Platform("linux", "arm64", "v8")),
    ("linux/amd64", Platform("linux", "amd64", None)),
    ("linux/arm", Platform("linux", "arm", "v7")),
    ("linux/aarch64", Platform("linux", "arm64", "v8")),
    ("linux/x86_64", Platform("linux", "amd64", None)),
])
def test_parse_platform(text, expected):
    assert parse_platform(text) == expected


@pytest.mark.parametrize("text", ["linux", "", "linux//v7", "a/b/c/d"])
def test_parse_platform_invalid(text):
    with pytest.raises(PlatformError, match="invalid platform"):
        parse_platform(text)


def entry(digest, arch, variant=None, system="linux"):
    platform = {"os": system, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": 1, "platform": platform}


INDEX = [entry("amd", "amd64"), entry("arm64", "arm64", "v8"),
         entry("att", "unknown", system="unknown")]


@pytest.mark.parametrize("manifests,wanted,digest", [
    (INDEX, "linux/amd64", "amd"),
    (INDEX, "linux/arm64", "arm64"),
    (INDEX, "linux/arm64/v8", "arm64"),
    (INDEX, host_platform("aarch64"), "arm64"),
    ([entry("a", "arm64")], "linux/arm64/v8", "a"),  # missing variant means v8
    ([entry("v6", "arm", "v6"), entry("v7", "arm", "v7")], "linux/arm/v7", "v7"),
    ([entry("v7", "arm", "v7"), entry("v6", "arm", "v6")], "linux/arm/v6", "v6"),
    ([entry("v6", "arm", "v6")], "linux/arm/v7", "v6"),  # v7 runs v6
    ([entry("v2", "amd64", "v2"), entry("plain", "amd64")], "linux/amd64", "plain"),
    ([entry("v3", "amd64", "v3")], "linux/amd64", "v3"),
])
def test_choose_manifest(manifests, wanted, digest):
    assert choose_manifest(manifests, wanted)["digest"] == digest


def test_no_match_lists_available():
    with pytest.raises(PlatformError) as info:
        choose_manifest(INDEX, "linux/s390x", "busybox:latest")
    assert str(info.value) == ("no linux/s390x image for busybox:latest "
                               "(available: linux/amd64, linux/arm64/v8)")


def test_arm_v6_host_cannot_use_v7():
    with pytest.raises(PlatformError, match=r"no linux/arm/v6 image \(available: linux/arm/v7"):
        choose_manifest([entry("v7", "arm", "v7")], "linux/arm/v6")


def test_entries_without_platform_are_skipped():
    with pytest.raises(PlatformError, match=r"\(available: none\)"):
        choose_manifest([{"digest": "x"}], "linux/amd64", "x:y")
