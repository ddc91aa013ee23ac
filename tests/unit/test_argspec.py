"""Unit tests for agent_payload.argspec: Ansible-style argument specs, as data."""

import pytest

from agent_payload import argspec
from agent_payload.argspec import ArgumentError

# (option type, given value, converted value)
CONVERSIONS = [
    ("str", "text", "text"),
    ("str", 5, "5"),
    ("str", 2.5, "2.5"),
    ("str", True, "True"),
    ("str", False, "False"),
    ("path", "/var/lib/fleet", "/var/lib/fleet"),
    ("path", 7, "7"),
    ("int", 3, 3),
    ("int", "42", 42),
    ("int", " 42 ", 42),
    ("int", "-7", -7),
    ("int", 4.0, 4),
    ("float", 1, 1.0),
    ("float", "2.5", 2.5),
    ("float", 2.5, 2.5),
    ("list", ["a", "b"], ["a", "b"]),
    ("list", "a,b", ["a", "b"]),
    ("list", "a, b ,c", ["a", "b", "c"]),
    ("list", "", []),
    ("list", 5, [5]),
    ("dict", {"a": 1}, {"a": 1}),
    ("raw", {"x": [1]}, {"x": [1]}),
    ("raw", "anything", "anything"),
    ("bool", True, True),
    ("bool", False, False),
    ("bool", 1, True),
    ("bool", 0, False),
    ("bool", 1.0, True),
]
# Ansible's boolean strings, any case, surrounding blanks ignored.
CONVERSIONS += [("bool", text, True) for text in
                ("yes", "on", "1", "true", "y", "t", "YES", "True", " On ")]
CONVERSIONS += [("bool", text, False) for text in
                ("no", "off", "0", "false", "n", "f", "NO", "False", " Off ")]


@pytest.mark.parametrize("kind, given, expected", CONVERSIONS)
def test_type_conversion(kind, given, expected):
    result = argspec.validate({"opt": {"type": kind}}, {"opt": given})
    assert result == {"opt": expected}
    assert type(result["opt"]) is type(expected)


def test_type_defaults_to_str():
    assert argspec.validate({"opt": {}}, {"opt": 12}) == {"opt": "12"}


# (option type, bad value, fragment of the one-line error)
BAD_VALUES = [
    ("int", "abc", "opt: 'abc' is not an integer"),
    ("int", "1.5", "is not an integer"),
    ("int", 1.5, "is not an integer"),
    ("int", True, "expected an integer, got a boolean"),
    ("float", "fast", "opt: 'fast' is not a number"),
    ("float", [1], "is not a number"),
    ("bool", "maybe", "opt: 'maybe' is not a boolean"),
    ("bool", 2, "is not a boolean"),
    ("bool", [True], "is not a boolean"),
    ("str", ["a"], "opt: expected a string, got list"),
    ("str", {"a": 1}, "expected a string, got dict"),
    ("path", ["a"], "expected a string, got list"),
    ("dict", "a=1", "opt: expected a mapping, got str"),
    ("dict", [1], "expected a mapping, got list"),
    ("nonsense", 1, "unknown type 'nonsense'"),
]


@pytest.mark.parametrize("kind, given, message", BAD_VALUES)
def test_bad_value_names_the_option(kind, given, message):
    with pytest.raises(ArgumentError, match=None) as info:
        argspec.validate({"opt": {"type": kind}}, {"opt": given})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_int_with_leading_zero_is_decimal_as_in_ansible():
    assert argspec.validate({"n": {"type": "int"}}, {"n": "010"}) == {"n": 10}


def test_argument_error_is_a_value_error():
    assert issubclass(ArgumentError, ValueError)


@pytest.mark.parametrize("elements, given, expected", [
    ("int", ["1", 2, "3"], [1, 2, 3]),
    ("int", "1,2", [1, 2]),
    ("str", [1, True], ["1", "True"]),
    ("bool", ["yes", "no"], [True, False]),
    ("dict", [{"a": 1}], [{"a": 1}]),
])
def test_list_elements_are_converted(elements, given, expected):
    spec = {"items": {"type": "list", "elements": elements}}
    assert argspec.validate(spec, {"items": given}) == {"items": expected}


def test_list_element_error_names_its_index():
    spec = {"ports": {"type": "list", "elements": "int"}}
    with pytest.raises(ArgumentError, match=r"ports\[1\]: 'x' is not an integer"):
        argspec.validate(spec, {"ports": ["80", "x"]})


SPEC = {
    "name": {"type": "str", "required": True, "aliases": ["n", "container_name"]},
    "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
    "count": {"type": "int", "default": 1},
    "capabilities": {"type": "list", "elements": "str", "choices": ["NET_ADMIN", "SYS_TIME"]},
    "password": {"type": "str", "no_log": True},
    "token": {"type": "str", "no_log": True, "aliases": ["api_token"]},
    "env": {"type": "dict"},
}


@pytest.mark.parametrize("params, expected", [
    ({"name": "web"},
     {"name": "web", "state": "started", "count": 1, "capabilities": None, "password": None,
      "token": None, "env": None}),
    ({"n": "web", "count": "3"},
     {"name": "web", "state": "started", "count": 3, "capabilities": None, "password": None,
      "token": None, "env": None}),
    ({"container_name": "db", "state": "stopped", "capabilities": "NET_ADMIN,SYS_TIME"},
     {"name": "db", "state": "stopped", "count": 1, "capabilities": ["NET_ADMIN", "SYS_TIME"],
      "password": None, "token": None, "env": None}),
    ({"name": "x", "state": None},  # an explicit null takes the default
     {"name": "x", "state": "started", "count": 1, "capabilities": None, "password": None,
      "token": None, "env": None}),
    ({"name": "x", "api_token": "t0k", "env": {"A": "1"}},
     {"name": "x", "state": "started", "count": 1, "capabilities": None, "password": None,
      "token": "t0k", "env": {"A": "1"}}),
])
def test_validate_resolves_aliases_and_fills_defaults(params, expected):
    assert argspec.validate(SPEC, params) == expected


@pytest.mark.parametrize("params, message", [
    ({}, "missing required parameter 'name'"),
    ({"name": None}, "missing required parameter 'name'"),
    ({"name": "a", "n": "b"}, "'n' given twice (through an alias)"),
    ({"n": "a", "container_name": "b"}, "given twice (through an alias)"),
    ({"name": "a", "state": "paused"}, "state: 'paused' is not one of started, stopped"),
    ({"name": "a", "capabilities": ["NET_ADMIN", "SYS_ADMIN"]},
     "capabilities: 'SYS_ADMIN' is not one of NET_ADMIN, SYS_TIME"),
    ({"name": "a", "colour": "red"},
     "unsupported parameter 'colour' (supported: capabilities, count, env, name, password, "
     "state, token)"),
])
def test_validate_errors(params, message):
    with pytest.raises(ArgumentError) as info:
        argspec.validate(SPEC, params)
    assert message in str(info.value)


def test_choices_apply_to_converted_values():
    spec = {"level": {"type": "int", "choices": [1, 2, 3]}}
    assert argspec.validate(spec, {"level": "2"}) == {"level": 2}
    with pytest.raises(ArgumentError, match="level: 4 is not one of 1, 2, 3"):
        argspec.validate(spec, {"level": "4"})


def test_choices_checked_on_defaults_too():
    spec = {"mode": {"default": "bad", "choices": ["good"]}}
    with pytest.raises(ArgumentError, match="mode: 'bad' is not one of good"):
        argspec.validate(spec, {})


@pytest.mark.parametrize("params", [None, [], "name=web", 3])
def test_params_must_be_a_mapping(params):
    with pytest.raises(ArgumentError, match="arguments: expected a mapping of options"):
        argspec.validate(SPEC, params)


NESTED = {
    "healthcheck": {"type": "dict", "options": {
        "test": {"type": "list", "elements": "str", "required": True},
        "retries": {"type": "int", "default": 3},
    }},
    "ports": {"type": "list", "elements": "dict", "options": {
        "published": {"type": "int", "required": True, "aliases": ["host_port"]},
        "protocol": {"type": "str", "default": "tcp", "choices": ["tcp", "udp"]},
    }},
}


@pytest.mark.parametrize("params, expected", [
    ({}, {"healthcheck": None, "ports": None}),
    ({"healthcheck": {"test": "CMD,true"}},
     {"healthcheck": {"test": ["CMD", "true"], "retries": 3}, "ports": None}),
    ({"healthcheck": {"test": ["x"], "retries": "5"}},
     {"healthcheck": {"test": ["x"], "retries": 5}, "ports": None}),
    ({"ports": [{"published": "8080"}, {"host_port": 53, "protocol": "udp"}]},
     {"healthcheck": None,
      "ports": [{"published": 8080, "protocol": "tcp"}, {"published": 53, "protocol": "udp"}]}),
    ({"ports": []}, {"healthcheck": None, "ports": []}),
])
def test_nested_options(params, expected):
    assert argspec.validate(NESTED, params) == expected


@pytest.mark.parametrize("params, message", [
    ({"healthcheck": {}}, "missing required parameter 'healthcheck.test'"),
    ({"healthcheck": {"test": ["x"], "bogus": 1}},
     "unsupported parameter 'healthcheck.bogus' (supported: retries, test)"),
    ({"healthcheck": {"test": ["x"], "retries": "many"}},
     "healthcheck.retries: 'many' is not an integer"),
    ({"healthcheck": "CMD true"}, "healthcheck: expected a mapping, got str"),
    ({"ports": [{"published": 1}, {}]}, "missing required parameter 'ports[1].published'"),
    ({"ports": [{"published": 1, "protocol": "sctp"}]},
     "ports[0].protocol: 'sctp' is not one of tcp, udp"),
    ({"ports": [{"published": 1, "extra": 2}]},
     "unsupported parameter 'ports[0].extra' (supported: protocol, published)"),
    ({"ports": ["8080:80"]}, "ports[0]: expected a mapping of options"),
    ({"ports": [{"published": 1, "host_port": 2}]},
     "'ports[0].host_port' given twice (through an alias)"),
])
def test_nested_errors_name_the_path(params, message):
    with pytest.raises(ArgumentError) as info:
        argspec.validate(NESTED, params)
    assert message in str(info.value)


def test_validate_does_not_change_the_callers_params():
    params = {"n": "web", "count": "2"}
    argspec.validate(SPEC, params)
    assert params == {"n": "web", "count": "2"}


def test_mutable_default_is_not_shared_with_the_spec():
    spec = {"tags": {"type": "list", "default": ["a"]}, "labels": {"type": "dict", "default": {}}}
    first = argspec.validate(spec, {})
    first["tags"].append("b")
    first["labels"]["x"] = "y"
    assert argspec.validate(spec, {}) == {"tags": ["a"], "labels": {}}


@pytest.mark.parametrize("spec, expected", [
    ({}, set()),
    (SPEC, {"password", "token"}),
    ({"a": {"no_log": False}, "b": {"no_log": True}}, {"b"}),
    (NESTED, set()),  # nested no_log options are not top-level names
])
def test_secret_names(spec, expected):
    assert argspec.secret_names(spec) == expected


@pytest.mark.parametrize("value, expected", [
    ("Yes", True), ("off", False), (True, True), (0, False), (1.0, True)])
def test_to_bool(value, expected):
    assert argspec.to_bool(value) is expected


def test_to_bool_error_uses_the_name():
    with pytest.raises(ArgumentError, match="become: 'sure' is not a boolean"):
        argspec.to_bool("sure", "become")


@pytest.mark.parametrize("module_name", ["ping", "facts"])
def test_shipped_modules_have_valid_specs_and_docs(module_name):
    import importlib
    module = importlib.import_module("agent_payload.modules." + module_name)
    assert module.__doc__ and "Options:" in module.__doc__
    argspec.validate(module.ARGUMENT_SPEC, {})  # defaults alone are valid
