"""fleet.templating: native types, filters, tests, conditions, lazy variables, errors."""

from __future__ import annotations

import pytest

from fleet.templating import (
    OMIT,
    TemplateError,
    Unsafe,
    Variables,
    WithItems,
    condition_syntax_check,
    drop_omitted,
    evaluate_condition,
    evaluate_conditions,
    is_template,
    render,
    render_text,
    syntax_check,
)

VARS = {
    "num": 3,
    "flt": 1.5,
    "truth": True,
    "nothing": None,
    "empty": "",
    "name": "web",
    "lst": [1, 2],
    "dup": [3, 1, 3, 2, 1],
    "dct": {"a": 1, "b": "two"},
    "nested": {"inner": {"x": 1, "y": 2}, "keep": [1]},
    "users": [{"name": "ann", "admin": True}, {"name": "bob", "admin": False}],
    "path": "/srv/app/current.tar.gz",
    "ok": {"changed": False, "failed": False},
    "bad": {"changed": True, "failed": True},
    "looped": {"results": [{"changed": False}, {"changed": True}]},
    "skip": {"skipped": True},
    "chain": "{{ link }}",
    "link": "{{ num * 2 }}",
    "greeting": "hello {{ name }}",
}

# (template, expected): the type of the result counts too.
RENDER_CASES = [
    ("plain text", "plain text"),
    ("{{ num }}", 3),
    ("{{ num }} ", "3 "),
    ("{{ lst }}", [1, 2]),
    ("{{ dct }}", {"a": 1, "b": "two"}),
    ("{{ nothing }}", None),
    ("x{{ nothing }}y", "xy"),
    ("{{ '1' }}", "1"),
    ("{{ 1 }}{{ 2 }}", "12"),
    ("{{ num + 1 }}", 4),
    ("{{ flt * 2 }}", 3.0),
    ("{{ truth }}", True),
    ("{{ 'a' ~ num }}", "a3"),
    ("{% if truth %}yes{% else %}no{% endif %}", "yes"),
    ("{% for i in lst %}{{ i }},{% endfor %}", "1,2,"),
    ("line\n", "line\n"),
    ("{{ name }}\n", "web\n"),
    ("{{ chain }}", 6),
    ("{{ greeting }}!", "hello web!"),
    ("{{ vars['name'] }}", "web"),
    ("{{ range(3) | list }}", [0, 1, 2]),
    # default / mandatory / ternary / bool
    ("{{ missing | default('d') }}", "d"),
    ("{{ missing | d('d') }}", "d"),
    ("{{ empty | default('d') }}", ""),
    ("{{ empty | default('d', true) }}", "d"),
    ("{{ missing.sub.key | default(5) }}", 5),
    ("{{ missing['k'] | default(5) }}", 5),
    ("{{ num | mandatory }}", 3),
    ("{{ truth | ternary('on', 'off') }}", "on"),
    ("{{ nothing | ternary('t', 'f', 'n') }}", "n"),
    ("{{ 'yes' | bool }}", True),
    ("{{ 'off' | bool }}", False),
    ("{{ nothing | bool }}", False),
    ("{{ 1 | bool }}", True),
    # conversions
    ("{{ '42' | int }}", 42),
    ("{{ '4.5' | float }}", 4.5),
    ("{{ num | string }}", "3"),
    ("{{ 'MiXed' | lower }}-{{ 'MiXed' | upper }}", "mixed-MIXED"),
    ("{{ lst | join('-') }}", "1-2"),
    ("{{ dct | length }} {{ dct | count }}", "2 2"),
    # json / yaml
    ("{{ dct | to_json }}", '{"a": 1, "b": "two"}'),
    ("{{ {'c': 'Zürich'} | to_json }}", '{"c": "Z\\u00fcrich"}'),
    ("{{ {'b': 1, 'a': [1]} | to_nice_json }}", '{\n    "a": [\n        1\n    ],\n    "b": 1\n}'),
    ("{{ '{\"a\": [1]}' | from_json }}", {"a": [1]}),
    ("{{ dct | to_yaml }}", "{a: 1, b: two}\n"),
    ("{{ nested | to_nice_yaml }}", "inner:\n    x: 1\n    y: 2\nkeep:\n- 1\n"),
    ("{{ 'plain' | to_yaml }}", "plain\n"),
    ("{{ 'a: [1, 2]' | from_yaml }}", {"a": [1, 2]}),
    # paths, regex, quoting
    ("{{ path | basename }}", "current.tar.gz"),
    ("{{ path | dirname }}", "/srv/app"),
    (r"{{ path | regex_replace('^/srv/(\w+)/.*$', '\1') }}", "app"),
    ("{{ 'Hello' | regex_replace('L', '1', ignorecase=true) }}", "He11o"),
    ("{{ 'abc123def' | regex_search('[0-9]+') }}", "123"),
    (r"{{ 'abc123def' | regex_search('(?P<n>[0-9]+)(d)', '\g<n>', '\2') }}", ["123", "d"]),
    ("{{ 'abc' | regex_search('[0-9]+') }}", None),
    ("{{ 'a1b22' | regex_findall('[0-9]+') }}", ["1", "22"]),
    ('{{ "it\'s" | quote }}', "'it'\"'\"'s'"),
    ("{{ 'a b,c' | split(',') }}", ["a b", "c"]),
    # dicts and lists
    ("{{ dct | combine({'b': 3, 'c': 4}) }}", {"a": 1, "b": 3, "c": 4}),
    (
        "{{ nested | combine({'inner': {'y': 9}}, recursive=true) }}",
        {"inner": {"x": 1, "y": 9}, "keep": [1]},
    ),
    ("{{ nested | combine({'inner': {'y': 9}}) }}", {"inner": {"y": 9}, "keep": [1]}),
    (
        "{{ nested | combine({'keep': [2]}, list_merge='append') }}",
        {"inner": {"x": 1, "y": 2}, "keep": [1, 2]},
    ),
    ("{{ [dct, {'z': 0}] | combine }}", {"a": 1, "b": "two", "z": 0}),
    ("{{ dct | dict2items }}", [{"key": "a", "value": 1}, {"key": "b", "value": "two"}]),
    ("{{ dct | dict2items | items2dict }}", {"a": 1, "b": "two"}),
    ("{{ [{'k': 'x', 'v': 1}] | items2dict(key_name='k', value_name='v') }}", {"x": 1}),
    ("{{ 'hello' | b64encode }}", "aGVsbG8="),
    ("{{ 'aGVsbG8=' | b64decode }}", "hello"),
    ("{{ dup | unique }}", [3, 1, 2]),
    ("{{ ['b', 'A', 'a'] | unique }}", ["b", "A"]),
    ("{{ lst | union([2, 3, 3]) }}", [1, 2, 3]),
    ("{{ dup | intersect([1, 3]) }}", [3, 1]),
    ("{{ dup | difference([1]) }}", [3, 2]),
    ("{{ lst | symmetric_difference([2, 5]) }}", [1, 5]),
    ("{{ lst | first }} {{ lst | last }} {{ dup | min }} {{ dup | max }}", "1 2 1 3"),
    ("{{ dup | sort }}", [1, 1, 2, 3, 3]),
    ("{{ [1, [2, [3, [4]]], none, 'None'] | flatten }}", [1, 2, 3, 4]),
    ("{{ [1, [2, [3]]] | flatten(1) }}", [1, 2, [3]]),
    ("{{ lst | zip(['a', 'b']) | list }}", [[1, "a"], [2, "b"]]),
    ("{{ users | selectattr('admin') | map(attribute='name') | list }}", ["ann"]),
    ("{{ users | map(attribute='name') }}", ["ann", "bob"]),
    ("{{ 'abc' | hash('sha1') }}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("{{ 'abc' | hash('md5') }}", "900150983cd24fb0d6963f7d28e17f72"),
    ("{{ 'x' | ansible.builtin.to_json }}", '"x"'),
    ("{{ ['a', 'b'] | map('extract', {'a': 1, 'b': 2}) | list }}", [1, 2]),
    # tests
    (
        "{{ missing is defined }} {{ missing is undefined }} {{ nothing is none }}",
        "False True True",
    ),
    (
        "{{ ok is succeeded }} {{ ok is success }} {{ bad is failed }} {{ bad is failure }}",
        "True True True True",
    ),
    ("{{ ok is changed }} {{ looped is changed }} {{ skip is skipped }}", "False True True"),
    ("{{ 'foobar' is match('foo') }} {{ 'foobar' is match('bar') }}", "True False"),
    ("{{ 'foobar' is search('bar') }} {{ 'foobar' is regex('^f.*r$') }}", "True True"),
    ("{{ '1.10.2' is version('1.9', '>=') }}", True),
    ("{{ '1.2' is version('1.2.0', '==') }}", False),
    ("{{ '2.0' is version('10.0', 'lt') }}", True),
    ("{{ '1.0rc1' is version('1.0', '<') }}", False),
    ("{{ '1.0b1' is version('1.0', '<', strict=true) }}", True),
    ("{{ '1.2.3' is version_compare('1.2.4', 'lt') }}", True),
    (
        "{{ [1] is subset([1, 2]) }} {{ [1, 2] is superset([2]) }} {{ lst is contains(2) }}",
        "True True True",
    ),
]


@pytest.mark.parametrize("template, expected", RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_render(template, expected):
    result = render(template, VARS)
    assert result == expected
    assert type(result) is type(expected)


# (template, the exact error message)
ERROR_CASES = [
    ("{{ missing }}", "'missing' is undefined in '{{ missing }}'"),
    ("a {{ missing.x }}", "'missing' is undefined in 'a {{ missing.x }}'"),
    ("{{ [missing] }}", "'missing' is undefined in '{{ [missing] }}'"),
    ("{{ dct.nope }}", "'dict object' has no attribute 'nope' in '{{ dct.nope }}'"),
    (
        "{{ num | nofilter }}",
        "template syntax error: No filter named 'nofilter' in '{{ num | nofilter }}'",
    ),
    (
        "{{ num is notatest }}",
        "template syntax error: No test named 'notatest' in '{{ num is notatest }}'",
    ),
    (
        "{{ num",
        "template syntax error: unexpected end of template, expected 'end of print "
        "statement' in '{{ num'",
    ),
    (
        "{% if num %}x",
        "template syntax error: Unexpected end of template. Jinja was looking "
        "for the following tags: 'elif' or 'else' or 'endif'. The innermost "
        "block that needs to be closed is 'if' in '{% if num %}x'",
    ),
    (
        "{{ missing | mandatory }}",
        "mandatory variable not defined: 'missing' is undefined in '{{ missing | mandatory }}'",
    ),
    (
        "{{ missing | mandatory('set missing!') }}",
        "set missing! in \"{{ missing | mandatory('set missing!') }}\"",
    ),
    ("{{ num | combine({}) }}", "combine: expected mappings, got int in '{{ num | combine({}) }}'"),
    (
        "{{ lst is failed }}",
        "the 'failed' test expects a task result (a mapping) in '{{ lst is failed }}'",
    ),
    (
        "{{ '1.0' is version('a', 'lt') }}",
        "version comparison failed: '<' not supported between instances of 'int' and 'str' "
        "in \"{{ '1.0' is version('a', 'lt') }}\"",
    ),
    ("{{ num / 0 }}", "ZeroDivisionError: division by zero in '{{ num / 0 }}'"),
    (
        "{{ lookup('file', 'x') }}",
        "lookup plugin 'file' is not supported by fleet (only 'env') in "
        "\"{{ lookup('file', 'x') }}\"",
    ),
]


@pytest.mark.parametrize("template, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_render_errors(template, message):
    with pytest.raises(TemplateError) as caught:
        render(template, VARS)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_long_templates_are_shortened_in_errors():
    template = "{{ missing }}" + "x" * 200
    with pytest.raises(TemplateError) as caught:
        render(template, {})
    assert str(caught.value) == f"'missing' is undefined in '{template[:77]}...'"


def test_recursion_is_an_error():
    variables = {"a": "{{ b }}", "b": "{{ c }}", "c": "{{ a }}"}
    with pytest.raises(TemplateError, match=r"recursive loop detected in template: a -> b -> c"):
        render("{{ a }}", variables)


def test_undefined_inside_another_variable_names_the_inner_template():
    with pytest.raises(TemplateError) as caught:
        render("{{ outer }}", {"outer": "x{{ inner }}"})
    assert str(caught.value) == "'inner' is undefined in 'x{{ inner }}'"


def test_containers_are_rendered_recursively_keys_included():
    value = {"{{ name }}_key": ["{{ num }}", {"deep": "{{ lst }}"}, 5, None], "n": True}
    assert render(value, VARS) == {"web_key": [3, {"deep": [1, 2]}, 5, None], "n": True}


def test_rendering_does_not_modify_its_input():
    value = {"a": ["{{ num }}"]}
    render(value, VARS)
    assert value == {"a": ["{{ num }}"]}


def test_unsafe_strings_are_never_templated():
    assert render(Unsafe("{{ num }}"), VARS) == "{{ num }}"
    assert render("{{ raw }}", Variables({"raw": "{{ num }}", "num": 1}, literal={"raw"})) == (
        "{{ num }}"
    )
    assert render("{{ raw }}", {"raw": Unsafe("{{ num }}"), "num": 1}) == "{{ num }}"
    assert not is_template(Unsafe("{{ x }}"))


def test_variables_are_templated_once_and_cached():
    calls = []

    class Counting(dict):
        def __getitem__(self, key):
            calls.append(key)
            return super().__getitem__(key)

    variables = Variables(Counting({"a": "{{ b }}", "b": 2}))
    assert render("{{ a }} {{ a }}", variables) == "2 2"
    assert calls.count("a") == 1
    assert variables.raw("a") == "{{ b }}"
    assert dict(variables) == {"a": 2, "b": 2}


def test_lazy_mappings_in_results_become_dicts():
    variables = Variables({"sub": Variables({"x": "{{ 1 + 1 }}"})}, literal={"sub"})
    assert render("{{ sub }}", variables) == {"x": 2}
    assert type(render("{{ sub }}", variables)) is dict


def test_with_items_flattens_one_level():
    assert render(WithItems([[1, [2]], 3, "{{ lst }}"]), VARS) == [1, [2], 3, 1, 2]
    assert render(WithItems(["{{ [lst, [3, [4]]] }}"], string=True), VARS) == [1, 2, 3, [4]]
    assert render(WithItems(["single"], string=True), VARS) == ["single"]
    assert WithItems([1, 2]) == [1, 2]


def test_render_text_is_always_a_string():
    assert render_text("{{ num }}", VARS) == "3"
    assert render_text("{% for u in users %}{{ u.name }}\n{% endfor %}", VARS) == "ann\nbob\n"
    assert render_text("no template", VARS) == "no template"


def test_omit():
    assert render("{{ missing | default(omit) }}", {"omit": OMIT}) == OMIT
    args = {"a": 1, "b": OMIT, "c": [1, OMIT, {"d": OMIT, "e": 2}]}
    assert drop_omitted(args) == {"a": 1, "c": [1, {"e": 2}]}


def test_backslashes_in_string_literals_reach_filters_as_written():
    # As in Ansible: the YAML already decoded escapes, Jinja does not do it again.
    assert render("{{ 'a\\nb' | length }}", {}) == 4
    assert render(r"{{ 'x1y' | regex_replace('(\d)', '<\1>') }}", {}) == "x<1>y"


def test_lookup_env(monkeypatch):
    monkeypatch.setenv("FLEET_TEST_VALUE", "here")
    assert render("{{ lookup('env', 'FLEET_TEST_VALUE') }}", {}) == "here"
    assert render("{{ query('env', 'FLEET_TEST_VALUE') }}", {}) == ["here"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("{{ x }}", True),
        ("{% if x %}{% endif %}", True),
        ("a {{", True),
        ("plain", False),
        ("{# comment #}", False),
        ("${#array[@]}", False),
        (5, False),
        (None, False),
        ({"k": ["{{ x }}"]}, True),
        ({"{{ k }}": 1}, True),
        ([1, "a"], False),
    ],
)
def test_is_template(value, expected):
    assert is_template(value) is expected


# (condition, expected)
CONDITION_CASES = [
    (True, True),
    (False, False),
    ("num == 3", True),
    ("lst | length > 1 and truth", True),
    ("missing is defined", False),
    ("missing is not defined", True),
    ("'b' in dct", True),
    ("not truth or num > 2", True),
    ("true", True),
    ("False", False),
    ("{{ truth }}", True),
    ("{{ expr }}", True),  # a string result is evaluated as an expression
    ("{{ 'num < 3' }}", False),
    ("  {{ truth }}  ", True),
    ("dct.b is match('t\\w+')", True),
    ("ok is succeeded", True),
    ("missing.x | default(false)", False),
]


@pytest.mark.parametrize(
    "condition, expected", CONDITION_CASES, ids=[str(c[0]) for c in CONDITION_CASES]
)
def test_evaluate_condition(condition, expected):
    assert evaluate_condition(condition, {**VARS, "expr": "num > 2"}) is expected


CONDITION_ERRORS = [
    ("missing", "'missing' is undefined in 'missing'"),
    (
        "lst",
        "conditional result (True) of 'lst' was derived from a value of type 'list'; "
        "conditionals must have a boolean result (use '| bool', '| length > 0', "
        "'is defined', ...)",
    ),
    (
        "nothing",
        "conditional result (False) of 'nothing' was derived from a value of type "
        "'NoneType'; conditionals must have a boolean result (use '| bool', "
        "'| length > 0', 'is defined', ...)",
    ),
    (1, "conditional expressions must be strings or booleans, got int 1"),
    ("", "empty conditional expression"),
    (
        "num == {{ num }}",
        "template syntax error: expected token ':', got '}' in 'num == {{ num }}'",
    ),
    ("num ==", "template syntax error: unexpected 'end of template' in 'num =='"),
    ("num == 3 3", "template syntax error: unexpected '3' after the expression in 'num == 3 3'"),
]


@pytest.mark.parametrize(
    "condition, message", CONDITION_ERRORS, ids=[str(c[0]) for c in CONDITION_ERRORS]
)
def test_condition_errors(condition, message):
    with pytest.raises(TemplateError) as caught:
        evaluate_condition(condition, VARS)
    assert str(caught.value) == message


def test_evaluate_conditions_needs_all_and_stops_early():
    assert evaluate_conditions([], VARS) is True
    assert evaluate_conditions(["num == 3", True], VARS) is True
    assert evaluate_conditions(["num == 4", "missing"], VARS) is False


def test_syntax_checks_need_no_variables():
    syntax_check({"a": ["{{ undefined_is_fine }}", "plain"], "{{ k }}": 1})
    condition_syntax_check("x is defined and y")
    condition_syntax_check(True)
    with pytest.raises(TemplateError, match="No filter named 'nope'"):
        syntax_check(["{{ x | nope }}"])
    with pytest.raises(TemplateError, match="unexpected 'end of template'"):
        condition_syntax_check("x ==")
    with pytest.raises(TemplateError, match="must be strings or booleans"):
        condition_syntax_check(3)
