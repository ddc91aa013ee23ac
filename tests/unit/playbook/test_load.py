"""load_playbook: YAML snippets to the model, and to the exact one-line error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fleet import modules
from fleet.playbook import Block, Origin, Play, PlaybookError, Task, load_playbook
from fleet.templating import WithItems

KNOWN = ", ".join(modules.known_names())


def _load(write, text: str):
    write("site.yml", text)
    return load_playbook("site.yml")


def _task(write, body: str) -> Task:
    """The first task of a one-play playbook whose first task is ``body``."""
    text = "- hosts: all\n  tasks:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return _load(write, text + "\n").plays[0].tasks[0]


def test_a_whole_play(write):
    book = _load(
        write,
        """
        - name: web servers
          hosts: [web, "db:&prod"]
          gather_facts: no
          vars: {a: 1}
          vars_files: vars/main.yml
          become: yes
          become_user: app
          serial: [1, "30%"]
          strategy: free
          tags: deploy
          ignore_errors: true
          pre_tasks:
            - ping:
          tasks:
            - name: say hi
              debug: msg=hi
          post_tasks:
            - ping:
          handlers:
            - name: restart
              debug: {msg: restarting}
              listen: [web restarts]
    """,
    )
    assert book.path == Path("site.yml")
    play = book.plays[0]
    assert isinstance(play, Play)
    assert (play.name, play.hosts, play.origin) == (
        "web servers",
        "web:db:&prod",
        Origin("site.yml", 1),
    )
    assert (play.gather_facts, play.vars, play.vars_files) == (False, {"a": 1}, ["vars/main.yml"])
    assert (play.become, play.become_user, play.serial, play.strategy) == (
        True,
        "app",
        [1, "30%"],
        "free",
    )
    assert (play.tags, play.ignore_errors) == (["deploy"], True)
    assert [t.action for t in play.pre_tasks + play.tasks + play.post_tasks] == [
        "ping",
        "debug",
        "ping",
    ]
    assert play.tasks[0] == Task(
        name="say hi",
        action="debug",
        args={"msg": "hi"},
        origin=Origin("site.yml", 15),
        tags=["deploy"],
    )
    handler = play.handlers[0]
    assert (handler.name, handler.listen, handler.origin) == (
        "restart",
        ["web restarts"],
        Origin("site.yml", 20),
    )


def test_play_defaults(write):
    play = _load(write, "- hosts: all\n").plays[0]
    assert play == Play(name="all", hosts="all", origin=Origin("site.yml", 1))
    assert (play.gather_facts, play.become, play.serial, play.strategy) == (
        True,
        False,
        None,
        "linear",
    )


# (task YAML, {attribute: expected})
TASK_CASES = [
    ("- debug: msg=hi", {"action": "debug", "args": {"msg": "hi"}, "name": None}),
    ("- ansible.builtin.debug: {msg: hi}", {"action": "debug", "args": {"msg": "hi"}}),
    (
        "- ansible.legacy.set_fact: a=1 b='x y'",
        {"action": "set_fact", "args": {"a": "1", "b": "x y"}},
    ),
    ("- fleet.ping:", {"action": "ping", "args": {}}),
    ("- command: echo hi", {"action": "command", "args": {"_raw_params": "echo hi"}}),
    (
        "- shell: chdir=/srv creates=/x make >log",
        {"action": "shell", "args": {"chdir": "/srv", "creates": "/x", "_raw_params": "make >log"}},
    ),
    (
        "- command: ls\n  args:\n    chdir: /tmp",
        {"action": "command", "args": {"chdir": "/tmp", "_raw_params": "ls"}},
    ),
    ("- command:\n    cmd: ls\n    chdir: /tmp", {"args": {"cmd": "ls", "chdir": "/tmp"}}),
    (
        "- file: path=/tmp/x state=directory\n  args: {mode: '0755', state: file}",
        {"args": {"path": "/tmp/x", "state": "directory", "mode": "0755"}},
    ),
    ("- action: copy src=a dest=b", {"action": "copy", "args": {"src": "a", "dest": "b"}}),
    (
        "- action: {module: ansible.builtin.file, path: /x}",
        {"action": "file", "args": {"path": "/x"}},
    ),
    ("- debug: msg=x\n  when: a", {"when": ["a"]}),
    ("- debug: msg=x\n  when: [a, true, '{{ b }}']", {"when": ["a", True, "{{ b }}"]}),
    ("- debug: msg=x\n  loop: [1, 2]", {"loop": [1, 2], "loop_var": "item"}),
    ("- debug: msg=x\n  loop: '{{ items }}'", {"loop": "{{ items }}"}),
    ("- debug: msg=x\n  with_items: [[1, 2], 3]", {"loop": WithItems([[1, 2], 3])}),
    (
        "- debug: msg=x\n  with_items: '{{ items }}'",
        {"loop": WithItems(["{{ items }}"], string=True)},
    ),
    ("- debug: msg=x\n  with_list: [[1, 2], 3]", {"loop": [[1, 2], 3]}),
    ("- debug: msg=x\n  loop: [1]\n  loop_control: {loop_var: pkg}", {"loop_var": "pkg"}),
    ("- debug: msg=x\n  register: out", {"register": "out"}),
    ("- debug: msg=x\n  notify: restart", {"notify": ["restart"]}),
    ("- debug: msg=x\n  notify: [a, b]", {"notify": ["a", "b"]}),
    ("- debug: msg=x\n  tags: 'a, b'", {"tags": ["a", "b"]}),
    ("- debug: msg=x\n  tags: [a, 7]", {"tags": ["a", "7"]}),
    ("- debug: msg=x\n  ignore_errors: yes", {"ignore_errors": True}),
    ("- debug: msg=x\n  ignore_errors: '{{ lax }}'", {"ignore_errors": "{{ lax }}"}),
    ("- debug: msg=x\n  changed_when: false", {"changed_when": [False], "failed_when": None}),
    ("- debug: msg=x\n  failed_when: [a, b]", {"failed_when": ["a", "b"]}),
    ("- debug: msg=x\n  vars: {a: 1}", {"vars": {"a": 1}}),
    ("- debug: msg=x\n  vars: [{a: 1}, {b: 2}]", {"vars": {"a": 1, "b": 2}}),
    (
        "- debug: msg=x\n  become: true\n  become_user: root",
        {"become": True, "become_user": "root"},
    ),
    ("- debug: msg=x\n  check_mode: no\n  no_log: yes", {"check_mode": False, "no_log": True}),
    ("- name: 42\n  debug: msg=x", {"name": "42"}),
    (
        "- debug: msg=x",
        {
            "become": None,
            "check_mode": None,
            "no_log": False,
            "listen": [],
            "when": [],
            "loop": None,
            "changed_when": None,
        },
    ),
]


@pytest.mark.parametrize("body, expected", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_task(write, body, expected):
    task = _task(write, body)
    assert task.origin == Origin("site.yml", 3)
    for name, value in expected.items():
        assert getattr(task, name) == value, name
        assert type(getattr(task, name)) is type(value), name


def test_blocks_and_inherited_tags(write):
    play = _load(
        write,
        """
        - hosts: all
          tags: [p]
          tasks:
            - name: outer
              block:
                - debug: msg=a
                  tags: t
                - block:
                    - debug: msg=b
                  rescue:
                    - debug: msg=c
                  always:
                    - debug: msg=d
                  tags: inner
                  when: x
                  vars: {v: 2}
              tags: [o]
              become: true
              ignore_errors: true
    """,
    ).plays[0]
    outer = play.tasks[0]
    assert isinstance(outer, Block)
    assert (outer.name, outer.tags, outer.become, outer.ignore_errors, outer.origin) == (
        "outer",
        ["p", "o"],
        True,
        True,
        Origin("site.yml", 4),
    )
    first, inner = outer.block
    assert first.tags == ["p", "o", "t"]
    assert (inner.when, inner.vars, inner.tags) == (["x"], {"v": 2}, ["p", "o", "inner"])
    assert [t.args["msg"] for t in inner.block + inner.rescue + inner.always] == ["b", "c", "d"]
    assert inner.always[0].tags == ["p", "o", "inner"]
    assert inner.always[0].origin == Origin("site.yml", 13)


def test_origins_of_keywords_and_arguments(write):
    task = _task(
        write,
        """
        - name: copy it
          copy:
            src: a
            dset: b
          when: x
    """,
    )
    assert task.key_origins["action"] == Origin("site.yml", 4)
    assert task.key_origins["when"] == Origin("site.yml", 7)
    assert task.arg_origins == {"src": Origin("site.yml", 5), "dset": Origin("site.yml", 6)}


# (playbook YAML, the exact error)
ERROR_CASES = [
    ("", "site.yml:1: the playbook has no plays"),
    ("[]\n", "site.yml:1: the playbook has no plays"),
    ("hosts: all\n", "site.yml:1: a playbook must be a list of plays, got a mapping"),
    (
        "- hosts: all\n- just text\n",
        "site.yml:2: a play must be a mapping, got the string 'just text'",
    ),
    ("- name: x\n", "site.yml:1: the play has no 'hosts'"),
    ("- hosts: ''\n", "site.yml:1: hosts: the pattern is empty"),
    ("- hosts: all\n  hsts: x\n", "site.yml:2: unknown play keyword 'hsts' (did you mean: hosts?)"),
    (
        "- hosts: all\n  xyzzy: 1\n",
        "site.yml:2: unknown play keyword 'xyzzy' (known: name, hosts, "
        "gather_facts, vars, vars_files, become, become_user, serial, strategy, pre_tasks, tasks, "
        "post_tasks, handlers, tags, ignore_errors, project)",
    ),
    (
        "- hosts: all\n  roles: [web]\n",
        "site.yml:2: 'roles' is not supported by fleet: put the role's tasks in the play",
    ),
    (
        "- import_playbook: other.yml\n",
        "site.yml:1: 'import_playbook' is not supported by fleet: list the plays in one playbook",
    ),
    (
        "- ansible.builtin.import_playbook: o.yml\n",
        "site.yml:1: 'ansible.builtin.import_playbook'"
        " is not supported by fleet: list the plays in one playbook",
    ),
    (
        "- hosts: all\n  any_errors_fatal: true\n",
        "site.yml:2: play keyword 'any_errors_fatal' is not supported by fleet",
    ),
    (
        "- hosts: all\n  strategy: debug\n",
        "site.yml:2: strategy: 'debug' is not supported (linear, free)",
    ),
    (
        "- hosts: all\n  serial: lots\n",
        "site.yml:2: serial: expected a number of hosts or a "
        "percentage like '30%', got the string 'lots'",
    ),
    (
        "- hosts: all\n  gather_facts: maybe\n",
        "site.yml:2: gather_facts: expected a boolean, got the string 'maybe'",
    ),
    (
        "- hosts: all\n  become: '{{ b }}'\n",
        "site.yml:2: become: expected a boolean, got the "
        "string '{{ b }}' (templates are not supported here)",
    ),
    ("- hosts: all\n  vars: [1]\n", "site.yml:2: vars: expected a mapping, got the number 1"),
    (
        "- hosts: all\n  vars:\n    ok: 1\n    bad-name: 2\n",
        "site.yml:4: vars: 'bad-name' is not a valid variable name",
    ),
    (
        "- hosts: all\n  tasks: {debug: x}\n",
        "site.yml:2: tasks: expected a list of tasks, got a mapping",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug\n",
        "site.yml:3: a task must be a mapping, got the string 'debug'",
    ),
    (
        "- hosts: all\n  tasks:\n    - name: x\n",
        f"site.yml:3: no action in the task (known actions: {KNOWN})",
    ),
    (
        "- hosts: all\n  tasks:\n    - name: x\n      cpy: {}\n",
        f"site.yml:4: unknown action 'cpy' (did you mean: copy? known actions: {KNOWN})",
    ),
    (
        "- hosts: all\n  tasks:\n    - community.docker.docker_container: {}\n",
        f"site.yml:3: unknown action 'community.docker.docker_container' (known actions: {KNOWN})",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      whn: y\n",
        "site.yml:4: unknown task keyword 'whn' (did you mean: when?)",
    ),
    (
        "- hosts: all\n  tasks:\n    - nme: x\n",
        "site.yml:3: unknown task keyword 'nme' (did you mean: name?)",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      copy: {}\n",
        "site.yml:4: conflicting action statements: debug, copy",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      action: ping\n",
        "site.yml:4: conflicting action statements: debug, action",
    ),
    (
        "- hosts: all\n  tasks:\n    - include_tasks: more.yml\n",
        "site.yml:3: 'include_tasks' is not supported by fleet: put the tasks in the play, or "
        "group them with block",
    ),
    (
        "- hosts: all\n  tasks:\n    - ansible.builtin.import_tasks: more.yml\n",
        "site.yml:3: 'ansible.builtin.import_tasks' is not supported by fleet: put the tasks in "
        "the play, or group them with block",
    ),
    (
        "- hosts: all\n  tasks:\n    - import_role: {name: x}\n",
        "site.yml:3: 'import_role' is not supported by fleet: put the tasks in the play, or group "
        "them with block",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      delegate_to: localhost\n",
        "site.yml:4: task keyword 'delegate_to' is not supported by fleet",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      with_dict: {a: 1}\n",
        "site.yml:4: 'with_dict' is not supported by fleet: use loop",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      listen: y\n",
        "site.yml:4: 'listen' is only valid in handlers",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      loop: [1]\n      with_items: [2]\n",
        "site.yml:5: 'loop' and 'with_items' cannot be used together",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      loop: abc\n",
        "site.yml:4: loop: expected a list or a template, got the string 'abc'",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      register: 1bad\n",
        "site.yml:4: register: '1bad' is not a valid variable name",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      register: class\n",
        "site.yml:4: register: 'class' is not a valid variable name",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      loop_control: {loop_var: x}\n",
        "site.yml:4: loop_control without a loop",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      loop: [1]\n      loop_control:\n"
        "        index_var: i\n",
        "site.yml:6: loop_control: 'index_var' is not supported by fleet (supported: loop_var)",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      loop: [1]\n      loop_control:\n"
        "        loop_var: a-b\n",
        "site.yml:6: loop_control: loop_var 'a-b' is not a valid variable name",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      when: [1]\n",
        "site.yml:4: when: conditions must be strings or booleans, got the number 1",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      notify: [{a: 1}]\n",
        "site.yml:4: notify: expected a string or a list of strings, got a mapping",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: [1]\n",
        "site.yml:3: debug: the arguments must be a mapping or key=value text, got a list",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: hello\n",
        "site.yml:3: debug: expected key=value, got 'hello' (this action takes key=value "
        "arguments)",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg='open\n",
        'site.yml:3: debug: unbalanced quotes in "msg=\'open" (this action takes key=value '
        "arguments)",
    ),
    (
        "- hosts: all\n  tasks:\n    - command: ls\n      args: chdir=/tmp\n",
        "site.yml:4: args: expected a mapping, got the string 'chdir=/tmp'",
    ),
    (
        "- hosts: all\n  tasks:\n    - action: nothere x=1\n",
        f"site.yml:3: unknown action 'nothere' (known actions: {KNOWN})",
    ),
    ("- hosts: all\n  tasks:\n    - rescue: []\n", "site.yml:3: 'rescue' without 'block'"),
    (
        "- hosts: all\n  tasks:\n    - block: []\n      loop: [1]\n",
        "site.yml:4: block keyword 'loop' is not supported by fleet",
    ),
    (
        "- hosts: all\n  tasks:\n    - block: []\n      debug: msg=x\n",
        "site.yml:4: unknown block keyword 'debug' (known: name, block, rescue, always, when, "
        "tags, vars, become, become_user, ignore_errors)",
    ),
    (
        "- hosts: all\n  tasks:\n    - block:\n        - nope: 1\n",
        f"site.yml:4: unknown action 'nope' (known actions: {KNOWN})",
    ),
    (
        "- hosts: all\n  handlers:\n    - block: []\n",
        "site.yml:3: blocks are not supported in handlers",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n      debug: msg=y\n",
        "site.yml:4: duplicate key 'debug'",
    ),
    (
        "- hosts: all\n  tasks:\n    - debug: msg=x\n   - bad indent\n",
        "site.yml:4: invalid YAML: while parsing a block mapping, expected <block end>, but found "
        "'<block sequence start>' (column 4)",
    ),
]


@pytest.mark.parametrize("text, message", ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
def test_errors(write, text, message):
    write("site.yml", text)
    with pytest.raises(PlaybookError) as caught:
        load_playbook("site.yml")
    assert str(caught.value) == message


def test_file_name_as_given(write):
    write("plays/site.yml", "- hosts: all\n  tasks:\n    - frobnicate: 1\n")
    with pytest.raises(PlaybookError, match=r"^plays/site\.yml:3: unknown action 'frobnicate'"):
        load_playbook("plays/site.yml")
    with pytest.raises(PlaybookError) as caught:
        load_playbook("plays/missing.yml")
    assert str(caught.value) == "plays/missing.yml: file not found"


def _no_yaml_types(value, where="book"):
    """Every container and string in the model is a plain one (no origins attached)."""
    from dataclasses import fields, is_dataclass

    from fleet.playbook.yaml_loader import OriginDict, OriginList, OriginStr

    assert not isinstance(value, (OriginDict, OriginList, OriginStr)), where
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            if f.name not in ("key_origins", "arg_origins", "origin"):
                _no_yaml_types(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_yaml_types(key, f"{where} key {key!r}")
            _no_yaml_types(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _no_yaml_types(item, f"{where}[{i}]")


def test_the_model_holds_plain_values(write):
    book = _load(
        write,
        """
        - name: p
          hosts: [a, b]
          vars: {x: {y: [z]}}
          vars_files: [v.yml]
          become_user: u
          tags: [t]
          tasks:
            - name: n
              copy: {src: a, dest: b}
              args: {mode: '0644'}
              when: [c]
              loop: [i]
              register: r
              notify: h
              vars: {k: v}
            - block:
                - command: chdir=/ ls
              name: b
              when: w
              vars: {bv: 1}
            - action: file path=/x
              with_items: [1, [2]]
          handlers:
            - name: h
              debug: var=x
              listen: l
    """,
    )
    _no_yaml_types(book)
