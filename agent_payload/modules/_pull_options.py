"""The registry options of a pull, shared by the image module and the container module
(which pulls a missing image) without the container module importing the registry
client: most container calls pull nothing, and the import costs ~50 ms."""

PULL_OPTIONS = {
    "registry_auth": {"type": "dict", "no_log": True, "options": {
        "username": {"type": "str", "required": True},
        "password": {"type": "str", "required": True, "no_log": True}}},
    "insecure_registries": {"type": "list", "elements": "str", "default": []},
    "ca_file": {"type": "path"},
}
