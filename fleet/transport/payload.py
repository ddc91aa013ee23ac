"""The payload zipapp: built once per process from agent_payload/, named by its hash.

The zip is deterministic (sorted names, fixed timestamps), so the same source always
has the same hash and a host that already holds it never receives it again. The
bootstrap is the small program passed to ``python3 -c``: it runs the cached zip when
its content matches the hash, otherwise asks for it on the channel, stores it
atomically and runs it.
"""

import functools
import hashlib
import io
import os
import shlex
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import agent_payload

HASH_LEN = 16
NEED_MARKER = b"FLEET-NEED\n"
CACHE_DIR = "~/.cache/fleet"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MAIN = b"from agent_payload.serve import main\nmain('manual')\n"

# Kept small and python3.8-compatible: it is sent on every connection. The payload is
# unpacked into a directory named by its hash, so Python caches its bytecode there and
# a cached start compiles nothing; the directory appears by an atomic rename, whole.
BOOTSTRAP = r"""
import os,sys
h=sys.argv[1];d=os.path.join(os.path.expanduser('~'),'.cache','fleet')
p=os.path.join(d,'payload-'+h);s='cached'
if not os.path.isdir(p):
 import hashlib,io,shutil,zipfile
 def rd(n):
  b=b''
  while len(b)<n:
   c=os.read(0,n-len(b))
   if not c:sys.exit('fleet: payload upload cut short')
   b+=c
  return b
 os.write(1,b'FLEET-NEED\n');b=rd(int(rd(12)))
 if hashlib.sha256(b).hexdigest()[:len(h)]!=h:sys.exit('fleet: payload hash mismatch')
 os.makedirs(d,0o700,exist_ok=True);t=p+'.%d'%os.getpid()
 zipfile.ZipFile(io.BytesIO(b)).extractall(t)
 try:os.rename(t,p)
 except OSError:shutil.rmtree(t)
 s='uploaded'
sys.path.insert(0,p)
from agent_payload.serve import main
main(s,h)
""".strip()


@dataclass(frozen=True)
class Payload:
    """The built zipapp and its content hash."""

    data: bytes
    digest: str

    def command(self, python, become=False, become_user="root", become_password=False):
        """The remote command line that starts the payload in serve mode."""
        argv = [python, "-I", "-S", "-c", BOOTSTRAP, self.digest]
        if become:
            sudo = ["sudo", "-H", "-u", become_user]
            sudo += ["-S", "-p", SUDO_PROMPT] if become_password else ["-n"]
            argv = sudo + ["--"] + argv
        return " ".join(shlex.quote(arg) for arg in argv)

    def upload_frame(self):
        """What the controller sends after NEED_MARKER: a 12-digit length, then the zip."""
        return b"%012d" % len(self.data) + self.data


SUDO_PROMPT = "[fleet-sudo-password]"


def build_zip(root):
    """Return the deterministic zip of the package directory ``root``."""
    buffer = io.BytesIO()
    entries = [("__main__.py", _MAIN)]
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as handle:
                entries.append(("agent_payload/" + relative, handle.read()))
    # Stored, not deflated: built on every run, shipped once per host and version.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in sorted(entries):
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


_building = threading.Lock()


def current_payload():
    """The payload of the agent_payload package this controller was installed with.

    Built once per process: the 32 threads that open a play's sessions at once all ask
    for it first, and each built its own zip (a few ms of the controller's single GIL,
    before any connection started) until this lock made the others wait."""
    with _building:
        return _build_current()


@functools.lru_cache(maxsize=1)
def _build_current():
    data = build_zip(Path(agent_payload.__file__).parent)
    return Payload(data, hashlib.sha256(data).hexdigest()[:HASH_LEN])
