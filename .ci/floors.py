"""Prints setup.cfg's dependency floors as exact pins (`name==floor`), for `make test-min`.

install_requires and the `dev` extra; torch is left out (the Makefile pins it as for `make install`).
"""

import configparser
import re
import sys

config = configparser.ConfigParser()
config.read(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg")
lines = config["options"]["install_requires"].split("\n") + config["options.extras_require"]["dev"].split("\n")
for line in lines:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,;\s]+)\s*", line)
    if line.strip() and not match:
        sys.exit(f"setup.cfg: {line.strip()!r} has no '>=' floor")
    if match and match.group(1).lower() != "torch":
        print(f"{match.group(1)}=={match.group(2)}")
