"""pyinfra workload (c): a directory and a template rendered into it."""
from pyinfra import host
from pyinfra.operations import files

files.directory(name="dir", path=f"/tmp/fleet-bench-{host.data.tool}-dir", mode="755")
files.template(name="template", src=host.data.bench_template,
               dest=f"/tmp/fleet-bench-{host.data.tool}-dir/app.conf",
               inventory_hostname=host.name, tool=host.data.tool)
