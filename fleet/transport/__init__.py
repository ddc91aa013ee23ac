"""Reaching hosts: SSH connections, the payload zipapp and its serve-mode sessions."""
