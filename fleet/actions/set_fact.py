"""set_fact: set host variables for the rest of the run (any key=value pairs).

Options: every key is a variable to set (values templated); ``cacheable`` is accepted
for Ansible compatibility and ignored.
"""

# None: any key is allowed (each one names a fact).
ARGUMENT_SPEC = None
