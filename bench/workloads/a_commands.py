"""pyinfra workload (a): ten no-op commands."""
from pyinfra.operations import server

for _ in range(10):
    server.shell(name="true", commands=["true"])
