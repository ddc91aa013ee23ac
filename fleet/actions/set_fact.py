"""set_fact: set host variables for the rest of the run (any key=value pairs).

Options: every key is a variable to set (values templated); ``cacheable`` is accepted
for Ansible compatibility and ignored.
"""

# None: any key is allowed (each one names a fact).
ARGUMENT_SPEC = None


def run(args, actx):
    """Store the (already templated) pairs as host variables."""
    facts = {k: v for k, v in args.items() if k != "cacheable"}
    actx.run.hostvars.set_fact(actx.host, facts)
    return {"changed": False, "ansible_facts": facts}
