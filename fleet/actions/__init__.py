"""Actions that run on the controller (debug, assert, set_fact, template's rendering)."""
