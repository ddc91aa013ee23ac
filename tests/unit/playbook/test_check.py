"""check_playbook: arguments against the action specs, templates, notify, vars files."""

from __future__ import annotations

import textwrap

import pytest

from fleet import modules
from fleet.playbook import PlaybookError, check_playbook, load_playbook


def _check(write, tasks: str, handlers: str = "", extra: str = ""):
    text = (
        "- hosts: all\n"
        + extra
        + "  tasks:\n"
        + textwrap.indent(textwrap.dedent(tasks).strip("\n"), "    ")
        + "\n"
    )
    if handlers:
        text += (
            "  handlers:\n" + textwrap.indent(textwrap.dedent(handlers).strip("\n"), "    ") + "\n"
        )
    write("site.yml", text)
    check_playbook(load_playbook("site.yml"))


# Tasks that pass: literal arguments fit, templated values are left for later.
OK_CASES = [
    "- copy: {src: a, dest: /b}",
    "- copy: src=a dest=/b force=no",
    "- copy: {dest: /b, thirsty: yes}",
    "- copy: {dest: '{{ where }}', force: '{{ f }}', backup: '{{ b | bool }}'}",
    "- file: {path: /x, state: '{{ wanted }}'}",
    "- file: {path: /x, attrs: '{{ a }}'}",
    "- file: {path: /x, attrs: {owner: root, size: '{{ n }}'}}",
    "- file: {path: /x, ports: [{port: 80}, {port: '{{ p }}', proto: tcp}]}",
    "- file: {path: /x, ports: '{{ ports }}'}",
    "- file: {dest: /x, mode: '0755'}",
    "- command: echo hi",
    "- command: chdir=/tmp creates=/x make",
    "- ansible.builtin.shell: '{{ cmd }}'",
    "- debug: msg='{{ x }}'",
    "- debug: {var: x, verbosity: 1}",
    "- debug:",
    "- set_fact: {a: 1, b: '{{ c }}', '{{ dynamic }}': 2, cacheable: yes}",
    "- assert: {that: ['x is defined', 'y == 1'], fail_msg: nope}",
    "- ping:\n  when: x is defined and x | bool\n  changed_when: false\n  failed_when: [a, b]",
    "- ping:\n  loop: '{{ things | map(attribute=\"name\") | list }}'",
]


@pytest.mark.parametrize("tasks", OK_CASES)
def test_passes(write, fake_modules, tasks):
    _check(write, tasks)


# (tasks, the exact first error)
ERROR_CASES = [
    (
        "- ping: {}\n- copy:\n    src: a\n    dset: /b\n",
        "site.yml:6: copy: unsupported parameter 'dset' (supported: backup, content, dest, force, "
        "mode, src)",
    ),
    (
        "- copy: src=a dset=/b",
        "site.yml:3: copy: unsupported parameter 'dset' (supported: backup, content, dest, force, "
        "mode, src)",
    ),
    (
        "- copy: {src: a, dset: '{{ d }}'}",
        "site.yml:3: copy: unsupported parameter 'dset' (supported: backup, content, dest, force, "
        "mode, src)",
    ),
    ("- copy: {src: a}", "site.yml:3: copy: missing required parameter 'dest'"),
    (
        "- copy:\n    dest: /b\n    force: sometimes",
        "site.yml:5: copy: force: 'sometimes' is not a boolean",
    ),
    (
        "- copy: {dest: /b, _digests: abc}",
        "site.yml:3: copy: unsupported parameter '_digests' (supported: backup, content, dest, "
        "force, mode, src)",
    ),
    (
        "- file: {path: /x, state: gone}",
        "site.yml:3: file: state: 'gone' is not one of file, directory, absent, touch",
    ),
    (
        "- file: {path: /x, attrs: {owner: root, color: red}}",
        "site.yml:3: file: unsupported parameter 'attrs.color' (supported: owner, size)",
    ),
    (
        "- file:\n    path: /x\n    attrs: {size: big}",
        "site.yml:5: file: attrs.size: 'big' is not an integer",
    ),
    (
        "- file: {path: /x, ports: [{proto: tcp}]}",
        "site.yml:3: file: missing required parameter 'ports[0].port'",
    ),
    ("- file: {path: /x, dest: /y}", "site.yml:3: file: 'dest' given twice (through an alias)"),
    (
        "- command: {chdir: /tmp, argv: [ls]}",
        "site.yml:3: command: unsupported parameter 'argv' (supported: _raw_params, chdir, cmd, "
        "creates, removes)",
    ),
    (
        "- command: executable=/bin/sh ls",
        "site.yml:3: command: unsupported parameter 'executable' (supported: _raw_params, chdir, "
        "cmd, creates, removes)",
    ),
    ("- debug: {msg: a, var: b}", "site.yml:3: debug: 'msg' and 'var' are mutually exclusive"),
    (
        "- debug: {msg: a, verbose: 1}",
        "site.yml:3: debug: unsupported parameter 'verbose' (supported: msg, var, verbosity)",
    ),
    ("- set_fact: {}", "site.yml:3: set_fact: no variables given"),
    (
        "- set_fact: {ok: 1, not-ok: 2}",
        "site.yml:3: set_fact: 'not-ok' is not a valid variable name",
    ),
    ("- assert: {fail_msg: x}", "site.yml:3: assert: missing required parameter 'that'"),
    (
        "- debug:\n    msg: '{{ x | nofilter }}'",
        "site.yml:4: debug: msg: template syntax error: No filter named 'nofilter' in "
        "'{{ x | nofilter }}'",
    ),
    (
        "- debug: msg=x\n  when: x ==",
        "site.yml:4: when: template syntax error: unexpected 'end of template' in 'x =='",
    ),
    (
        "- debug: msg=x\n  changed_when: '{{ x is nosuchtest }}'",
        "site.yml:4: changed_when: template syntax error: No test named 'nosuchtest' in "
        "'{{ x is nosuchtest }}'",
    ),
    (
        "- debug: msg=x\n  with_items: '{{ x | nope }}'",
        "site.yml:4: loop: template syntax error: No filter named 'nope' in '{{ x | nope }}'",
    ),
    (
        "- debug: msg=x\n  vars: {a: '{{ b | nope }}'}",
        "site.yml:4: vars: template syntax error: No filter named 'nope' in '{{ b | nope }}'",
    ),
    (
        "- name: '{{ oops'\n  debug: msg=x",
        "site.yml:3: name: template syntax error: unexpected end of template, expected 'end of "
        "print statement' in '{{ oops'",
    ),
    (
        "- block:\n    - ping:\n  when: '{{ x }'",
        "site.yml:5: when: template syntax error: expected token ':', got '}' in '{{ x }'",
    ),
    (
        "- debug: msg=x\n  notify: nobody",
        "site.yml:4: notify: no handler named 'nobody' in this play (handlers: none)",
    ),
]


@pytest.mark.parametrize("tasks, message", ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
def test_errors(write, fake_modules, tasks, message):
    with pytest.raises(PlaybookError) as caught:
        _check(write, tasks)
    assert str(caught.value) == message


def test_notify_matches_names_and_listen_topics(write, fake_modules):
    handlers = """
        - name: restart web
          debug: msg=r
        - name: reload
          debug: msg=l
          listen: config changed
          notify: restart web
    """
    _check(
        write, "- debug: msg=x\n  notify: [restart web, config changed, '{{ dynamic }}']", handlers
    )
    with pytest.raises(PlaybookError) as caught:
        _check(write, "- debug: msg=x\n  notify: restart db", handlers)
    assert str(caught.value) == (
        "site.yml:4: notify: no handler named 'restart db' in this play "
        "(handlers: config changed, reload, restart web)"
    )


def test_handlers_of_another_play_do_not_count(write, fake_modules):
    write(
        "site.yml",
        """\
- hosts: a
  handlers:
    - name: h
      debug: msg=x
- hosts: b
  tasks:
    - debug: msg=x
      notify: h
""",
    )
    with pytest.raises(PlaybookError, match=r"^site\.yml:8: notify: no handler named 'h'"):
        check_playbook(load_playbook("site.yml"))


def test_every_problem_is_collected_in_file_order(write, fake_modules):
    write(
        "site.yml",
        """\
- hosts: all
  tasks:
    - copy: {dset: x}
    - debug: msg=x
      notify: nobody
- hosts: all
  tasks:
    - set_fact: {}
""",
    )
    with pytest.raises(PlaybookError) as caught:
        check_playbook(load_playbook("site.yml"))
    assert [str(e) for e in caught.value.errors] == [
        "site.yml:3: copy: unsupported parameter 'dset' (supported: backup, content, dest, "
        "force, mode, src)",
        "site.yml:5: notify: no handler named 'nobody' in this play (handlers: none)",
        "site.yml:8: set_fact: no variables given",
    ]
    assert str(caught.value) == str(caught.value.errors[0])


def test_vars_files_are_checked(write, fake_modules):
    write("vars/good.yml", "a: 1\n")
    write("vars/bad.yml", "a: 1\nb: [\n")
    write("vars/list.yml", "- a\n")
    extra = "  vars_files:\n    - vars/good.yml\n    - 'vars/{{ env }}.yml'\n"
    _check(write, "- ping:", extra=extra)
    for name, message in [
        ("vars/missing.yml", "site.yml:2: vars_files: 'vars/missing.yml' not found (looked for "),
        (
            "vars/bad.yml",
            "vars/bad.yml:3: invalid YAML: while parsing a flow node, expected the "
            "node content, but found '<stream end>' (column 1)",
        ),
        (
            "vars/list.yml",
            "vars/list.yml:1: a vars file must be a mapping of variables, got a list",
        ),
    ]:
        with pytest.raises(PlaybookError) as caught:
            _check(write, "- ping:", extra=f"  vars_files: [{name}]\n")
        assert str(caught.value).startswith(message)


def test_a_module_that_cannot_be_imported_is_reported(write, monkeypatch):
    def broken(name):
        raise ModuleNotFoundError(f"No module named 'agent_payload.modules.{name}'")

    monkeypatch.setattr(modules, "action", broken)
    with pytest.raises(PlaybookError) as caught:
        _check(write, "- ping:")
    assert str(caught.value) == (
        "site.yml:3: ping: cannot load the action's argument spec (No "
        "module named 'agent_payload.modules.ping')"
    )


@pytest.mark.parametrize("name", ["command", "shell", "copy", "file"])
def test_the_real_specs_accept_a_typical_task(write, name):
    try:
        modules.action(name)
    except ImportError:
        pytest.skip(f"agent_payload/modules/{name}.py is not there yet")
    task = {
        "command": "- command: chdir=/tmp echo hi",
        "shell": "- shell: echo hi | tr a-z A-Z",
        "copy": "- copy: {content: hi, dest: '{{ d }}', mode: '0644'}",
        "file": "- file: path=/tmp/x state=directory mode=0755",
    }[name]
    _check(write, task)
