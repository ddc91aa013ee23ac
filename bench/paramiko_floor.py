"""The paramiko floor: connect to every host of an inventory-like list in threads and run
``/usr/bin/python3 -c pass`` on each, with strict host-key checking. Timed by the caller as a
whole process, interpreter start and imports included.

Usage: python3 paramiko_floor.py KEY KNOWN_HOSTS USER ADDRESS...
"""

import sys
import threading

import paramiko


def one(address, key, known_hosts, user, failures):
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, username=user, key_filename=key, look_for_keys=False,
                       allow_agent=False, timeout=10)
        _, stdout, _ = client.exec_command("/usr/bin/python3 -c pass")
        if stdout.channel.recv_exit_status() != 0:
            failures.append(address)
    except Exception as exc:
        failures.append(f"{address}: {exc}")
    finally:
        client.close()


def main(argv):
    key, known_hosts, user, *addresses = argv
    failures = []
    threads = [threading.Thread(target=one, args=(a, key, known_hosts, user, failures))
               for a in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit("failed: " + ", ".join(failures))


if __name__ == "__main__":
    main(sys.argv[1:])
