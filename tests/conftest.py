"""Settings for the whole suite.

Sessions are not kept between commands here (FLEET_PERSIST=no): a kept session is a
keeper process and a payload on a lab host that outlive the test that made them, and
one test's session must not carry into the next. The tests of persistence turn it on
for themselves, with a sessions directory of their own.
"""

import os

os.environ["FLEET_PERSIST"] = "no"
