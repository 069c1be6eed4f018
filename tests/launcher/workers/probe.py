"""Prints what a script sees of how it was started, as JSON: the launcher's
bootstrap must make this identical to running the script directly."""

import json
import sys

print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "file": __file__,
                  "main_file": getattr(sys.modules["__main__"], "__file__", None)}))
