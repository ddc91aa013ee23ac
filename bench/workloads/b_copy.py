"""pyinfra workload (b): copy a 1 MiB random file and set its mode."""
from pyinfra import host
from pyinfra.operations import files

files.put(name="random", src=host.data.bench_file,
          dest=f"/tmp/fleet-bench-{host.data.tool}-random.bin", mode="640")
