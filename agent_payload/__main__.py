"""Run the payload by hand: ``python3 payload.pyz`` serves on stdin/stdout."""

from agent_payload.serve import main

main("manual")
