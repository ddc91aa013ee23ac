"""The container runtime of the payload: planning (spec.py) apart from doing."""
