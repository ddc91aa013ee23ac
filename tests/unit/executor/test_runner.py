"""The executor end to end on local payloads: keywords, strategies, handlers, modes."""

import pytest

from fleet.executor.runner import batches, selected
from tests.unit.executor.conftest import results


def test_facts_debug_set_fact_and_register(run):
    code, doc = run("""
        - hosts: all
          tasks:
            - name: remember
              set_fact: {greeting: "hi {{ inventory_hostname }}"}
            - name: run
              command: echo {{ greeting }}
              register: out
              changed_when: false
            - name: show
              debug: {msg: "{{ out.stdout }} / {{ ansible_facts.python_version }}"}
        """)
    assert code == 0
    shown = results(doc, "show")
    assert shown["h1"]["msg"].startswith("hi h1 / 3.")
    assert shown["h2"]["msg"].startswith("hi h2 / 3.")
    assert doc["stats"]["h1"] == {"ok": 4, "changed": 0, "unreachable": 0, "failed": 0,
                                  "skipped": 0, "rescued": 0, "ignored": 0}


def test_files_converge_and_second_run_changes_nothing(run):
    playbook = """
        - hosts: all
          gather_facts: false
          tasks:
            - file: {path: "TMP/out-{{ inventory_hostname }}", state: directory, mode: "0750"}
            - copy: {src: files/data.txt, dest: "TMP/out-{{ inventory_hostname }}/data.txt"}
            - template: {src: t.j2, dest: "TMP/out-{{ inventory_hostname }}/t.txt", mode: "600"}
              notify: said
          handlers:
            - name: said
              debug: {msg: "templated on {{ inventory_hostname }}"}
        """
    files = {"files/data.txt": "payload data\n",
             "templates/t.j2": "host={{ inventory_hostname }}\n"}
    code, first = run(playbook, files=files)
    assert code == 0
    assert first["stats"]["h1"]["changed"] == 3
    assert results(first, "said")["h2"]["msg"] == "templated on h2"
    assert (run.tmp / "out-h2" / "t.txt").read_text() == "host=h2\n"
    assert oct((run.tmp / "out-h1" / "t.txt").stat().st_mode & 0o777) == "0o600"
    code, second = run(playbook, files=files)
    assert code == 0
    assert {s["changed"] for s in second["stats"].values()} == {0}
    with pytest.raises(KeyError):
        results(second, "said")  # not notified: nothing changed


def test_loops_when_and_failed_when(run):
    code, doc = run("""
        - hosts: h1
          gather_facts: false
          tasks:
            - name: looped
              command: echo {{ item }}
              loop: [1, 2, 3]
              when: item != 2
              register: looped
              changed_when: false
            - name: judged
              command: "false"
              failed_when: false
            - name: count
              assert:
                that:
                  - looped.results | length == 3
                  - looped.results[1].skipped
                  - looped.results[2].stdout == "3"
        """)
    assert code == 0, doc
    assert results(doc, "judged")["h1"]["status"] == "changed"  # command always is


def test_failure_stops_the_host_and_rescue_always_run(run):
    code, doc = run("""
        - hosts: all
          gather_facts: false
          tasks:
            - block:
                - name: breaks on h1
                  command: "false"
                  when: inventory_hostname == "h1"
              rescue:
                - name: rescued
                  debug: {msg: rescued}
              always:
                - name: always
                  debug: {msg: always}
            - name: fails h2
              command: "false"
              when: inventory_hostname == "h2"
            - name: after
              debug: {msg: after}
        """)
    assert code == 2
    assert results(doc, "rescued")["h1"]["msg"] == "rescued"
    assert set(results(doc, "always")) == {"h1", "h2"}
    assert set(results(doc, "after")) == {"h1"}
    assert doc["stats"]["h1"]["rescued"] == 1
    assert doc["stats"]["h2"]["failed"] == 1


def test_ignore_errors_counts_as_ignored(run):
    code, doc = run("""
        - hosts: h1
          gather_facts: false
          tasks:
            - {name: nope, command: "false", ignore_errors: true}
            - {name: next, debug: {msg: next}}
        """)
    assert code == 0
    assert doc["stats"]["h1"]["ignored"] == 1
    assert results(doc, "next")["h1"]["msg"] == "next"


def test_unreachable_host_is_reported_and_others_go_on(run):
    code, doc = run("""
        - hosts: all
          tasks:
            - {name: cmd, command: "true"}
        """, down=["h2"])
    assert code == 4
    assert doc["stats"]["h2"]["unreachable"] == 1
    assert results(doc, "cmd")["h1"]["status"] == "changed"


def test_check_mode_changes_nothing(run):
    code, doc = run("""
        - hosts: h1
          gather_facts: false
          tasks:
            - {name: d, file: {path: TMP/checked, state: directory}}
            - {name: c, copy: {content: "x", dest: TMP/checked-file}}
            - {name: x, command: touch TMP/touched}
        """, check=True)
    assert code == 0
    assert results(doc, "d")["h1"]["status"] == "changed"
    assert results(doc, "c")["h1"]["status"] == "changed"
    assert results(doc, "x")["h1"]["status"] == "skipped"
    assert not (run.tmp / "checked").exists()
    assert not (run.tmp / "checked-file").exists()
    assert not (run.tmp / "touched").exists()


def test_tags_select_tasks(run):
    playbook = """
        - hosts: h1
          gather_facts: false
          tasks:
            - {name: a, debug: {msg: a}, tags: [config]}
            - {name: b, debug: {msg: b}}
            - {name: c, debug: {msg: c}, tags: [always]}
            - {name: d, debug: {msg: d}, tags: [never, debug]}
        """
    _, doc = run(playbook, tags=("config",))
    assert [t["task"]["name"] for t in doc["plays"][0]["tasks"]] == ["a", "c"]
    _, doc = run(playbook, skip_tags=("config",))
    assert [t["task"]["name"] for t in doc["plays"][0]["tasks"]] == ["b", "c"]
    _, doc = run(playbook, tags=("debug",))
    assert [t["task"]["name"] for t in doc["plays"][0]["tasks"]] == ["c", "d"]


def test_extra_vars_win_and_limit_narrows(run):
    code, doc = run("""
        - hosts: all
          gather_facts: false
          vars: {color: blue}
          tasks:
            - {name: show, debug: {msg: "{{ color }}"}}
        """, extra_vars={"color": "red"}, limit="h2")
    assert code == 0
    assert results(doc, "show") == {"h2": {"msg": "red", "changed": False, "failed": False,
                                           "status": "ok", "ignored": False}}


def test_serial_batches_and_free_strategy(run):
    code, doc = run("""
        - hosts: all
          gather_facts: false
          serial: 1
          strategy: free
          tasks:
            - {name: one, debug: {msg: "{{ ansible_play_batch | join(',') }}"}}
        """, inventory="h1\nh2\nh3\n")
    assert code == 0
    batches_seen = [list(entry["hosts"].values())[0]["msg"]
                    for play in doc["plays"] for entry in play["tasks"]]
    assert batches_seen == ["h1", "h2", "h3"]


def test_template_error_fails_the_task_with_its_origin(run):
    code, doc = run("""
        - hosts: h1
          gather_facts: false
          tasks:
            - {name: bad, debug: {msg: "{{ nope }}"}}
        """)
    assert code == 2
    message = results(doc, "bad")["h1"]["msg"]
    assert "site.yml:" in message and "nope" in message


@pytest.mark.parametrize("hosts, serial, sizes", [
    (["a", "b", "c", "d", "e"], None, [5]),
    (["a", "b", "c", "d", "e"], [2], [2, 2, 1]),
    (["a", "b", "c", "d", "e"], [1, "50%"], [1, 2, 2]),
    ([], [1], []),
])
def test_batches(hosts, serial, sizes):
    assert [len(b) for b in batches(hosts, serial)] == sizes


class Opts:
    def __init__(self, tags=(), skip_tags=()):
        self.tags, self.skip_tags = tags, skip_tags


class Tagged:
    def __init__(self, *tags):
        self.tags = list(tags)


@pytest.mark.parametrize("task_tags, tags, skip, expected", [
    ((), (), (), True),
    (("never",), (), (), False),
    (("x",), ("x",), (), True),
    (("x",), ("y",), (), False),
    (("always",), ("y",), (), True),
    (("x",), ("all",), (), True),
    (("x",), ("tagged",), (), True),
    ((), ("untagged",), (), True),
    (("x",), (), ("x",), False),
])
def test_selected(task_tags, tags, skip, expected):
    assert selected(Tagged(*task_tags), Opts(tags, skip)) is expected


def test_skipped_results_are_registered(run):
    code, doc = run("""
        - hosts: h1
          gather_facts: false
          tasks:
            - {name: maybe, command: "true", when: false, register: maybe}
            - {name: check, assert: {that: [maybe is skipped, not maybe.changed]}}
        """)
    assert code == 0, doc
    assert results(doc, "maybe")["h1"]["status"] == "skipped"


def test_a_play_without_facts_opens_its_hosts_ahead_of_its_first_task(run):
    code, _ = run("""
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: on the controller}
            - command: "true"
              when: inventory_hostname == 'h1'
              tags: [remote]
        - hosts: all
          gather_facts: false
          tasks:
            - debug: {msg: nothing on the hosts}
    """)
    assert code == 0
    assert run.connections.prefetched == [["h1", "h2"]]  # the second play needs no host
    run("""
        - hosts: all
          gather_facts: false
          tasks:
            - {command: "true", tags: [remote]}
    """, skip_tags=("remote",))
    assert run.connections.prefetched == []  # --skip-tags left nothing for the hosts
