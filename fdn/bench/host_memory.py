"""Page faults per GB of large host buffers, with and without huge pages (``fdn.host_memory``), side by side.

Run: ``python -m fdn.bench host_memory [--gigabytes=0.5 --rounds=3]``. Measures this process (started as an fdn
command, so with ``glibc.malloc.hugetlb=1`` where that pays), then the same measurement in a child started with
``FDN_HOST_HUGEPAGES=0``, and prints both with the ratio and a JSON last line. Each round mallocs one block,
touches every byte and frees it: what XLA:CPU does with each step's temporary arena.
"""

import json
import os
import subprocess
import sys

from absl import flags

from fdn import host_memory

FLAGS = flags.FlagValues()
flags.DEFINE_float("gigabytes", 0.5, "size of the block", flag_values=FLAGS)
flags.DEFINE_integer("rounds", 3, "malloc / touch / free rounds", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool(
    "child", False, "measure this process only and print its JSON line (used for the comparison)", flag_values=FLAGS
)


def measure() -> dict:
    return {
        "state": host_memory.state(),
        "faults_per_gb": round(host_memory.faults_per_gb(FLAGS.gigabytes, FLAGS.rounds)),
    }


def measure_without_hugepages() -> dict:
    """The same measurement in a fresh process that keeps glibc's defaults."""
    env = {k: v for k, v in os.environ.items() if k != host_memory.TUNABLES}
    env[host_memory.OPT_OUT] = "0"
    argv = [sys.executable, "-m", "fdn.bench", "host_memory", "--child"]
    argv += [f"--gigabytes={FLAGS.gigabytes}", f"--rounds={FLAGS.rounds}"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    FLAGS(argv)
    this = measure()
    if FLAGS.child:
        print(json.dumps(this))
        return 0
    default = measure_without_hugepages()
    print(f"host memory: {FLAGS.rounds} x malloc / touch / free of {FLAGS.gigabytes} GB")
    for name, row in (("as fdn starts", this), ("glibc defaults", default)):
        print(f"  {name:16s} {row['faults_per_gb']:>9d} page faults per GB   huge pages {row['state']}")
    ratio = default["faults_per_gb"] / max(this["faults_per_gb"], 1)
    print(f"  fewer faults: {ratio:.0f}x")
    print(json.dumps({"bench": "host_memory", "fdn": this, "glibc_defaults": default, "ratio": ratio}))
    return 0
