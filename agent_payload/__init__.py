"""fleet's host payload: shipped as a zipapp over SSH and run in serve mode.

Standard library only, python3 >= 3.8. Nothing here is installed on a host.
"""
