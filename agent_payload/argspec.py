"""Module argument specs: one definition, checked on the controller and on the host.

A spec maps an option name to a dict with the keys Ansible modules use: ``type``
(str, int, float, bool, list, dict, path, raw), ``required``, ``default``,
``choices``, ``aliases``, ``elements`` (for lists), ``options`` (a nested spec for
dicts, or for lists of dicts) and ``no_log`` (the value is a secret: never echoed).
``validate`` returns the params with aliases resolved, types converted and defaults
filled, or raises ArgumentError with one line naming the option.
"""

TRUE_STRINGS = ("yes", "on", "1", "true", "y", "t")
FALSE_STRINGS = ("no", "off", "0", "false", "n", "f")


class ArgumentError(ValueError):
    """A parameter does not fit the module's spec; str() is one line naming it."""


def to_bool(value, name="value"):
    """Ansible's boolean conversion."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_STRINGS:
            return True
        if lowered in FALSE_STRINGS:
            return False
    raise ArgumentError(f"{name}: {value!r} is not a boolean")


def _convert(kind, value, name, option):
    if kind in (None, "raw"):
        return value
    if kind in ("str", "path"):
        if isinstance(value, (dict, list)):
            raise ArgumentError(f"{name}: expected a string, got {type(value).__name__}")
        text = value if isinstance(value, str) else str(value)
        if isinstance(value, bool):
            text = "True" if value else "False"
        return text
    if kind == "bool":
        return to_bool(value, name)
    if kind == "int":
        if isinstance(value, bool):
            raise ArgumentError(f"{name}: expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = str(value).strip()
        try:
            # Decimal as Ansible reads it ("010" is 10); hex only when spelled 0x.
            return int(text, 16) if text.lower().startswith(("0x", "-0x")) else int(text)
        except ValueError:
            raise ArgumentError(f"{name}: {value!r} is not an integer") from None
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ArgumentError(f"{name}: {value!r} is not a number") from None
    if kind == "list":
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",")] if value else []
        elif not isinstance(value, list):
            value = [value]
        elements = option.get("elements")
        if elements == "dict" and option.get("options"):
            return [validate(option["options"], item, f"{name}[{i}]")
                    for i, item in enumerate(value)]
        if elements:
            return [_convert(elements, item, f"{name}[{i}]", {})
                    for i, item in enumerate(value)]
        return value
    if kind == "dict":
        if not isinstance(value, dict):
            raise ArgumentError(f"{name}: expected a mapping, got {type(value).__name__}")
        if option.get("options"):
            return validate(option["options"], value, name)
        return value
    raise ArgumentError(f"{name}: unknown type {kind!r} in the module's spec")


def validate(spec, params, prefix=""):
    """Check ``params`` against ``spec``; return the normalized params."""
    if not isinstance(params, dict):
        raise ArgumentError("{}: expected a mapping of options".format(prefix or "arguments"))
    names = {}
    for name, option in spec.items():
        names[name] = name
        for alias in option.get("aliases", ()):
            names[alias] = name
    result = {}
    for key, value in params.items():
        canonical = names.get(key)
        label = prefix + "." + key if prefix else key
        if canonical is None:
            raise ArgumentError("unsupported parameter {!r} (supported: {})".format(
                label, ", ".join(sorted(spec))))
        if canonical in result:
            raise ArgumentError(f"{label!r} given twice (through an alias)")
        result[canonical] = value
    for name, option in spec.items():
        label = prefix + "." + name if prefix else name
        if result.get(name) is None:
            if option.get("required"):
                raise ArgumentError(f"missing required parameter {label!r}")
            # A copy: a module that changes its params must not change the spec.
            default = option.get("default")
            if isinstance(default, (list, dict)):
                import copy
                default = copy.deepcopy(default)
            result[name] = default
            if result[name] is None:
                continue
        value = _convert(option.get("type", "str"), result[name], label, option)
        choices = option.get("choices")
        if choices is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item not in choices:
                    raise ArgumentError("{}: {!r} is not one of {}".format(
                        label, item, ", ".join(str(c) for c in choices)))
        result[name] = value
    return result


def secret_names(spec):
    """Names of the spec's top-level options marked no_log."""
    return {name for name, option in spec.items() if option.get("no_log")}
