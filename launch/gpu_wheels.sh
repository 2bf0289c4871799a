#!/usr/bin/env bash
# Wheels of the fdn dependencies a preinstalled JAX+CUDA image usually lacks, for a GPU machine without
# internet: run this where pip reaches an index, carry .whl/ along, and launch/gpu_bench.sh installs them.
#
#   bash launch/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12 (the target machine's, not this one's)
#
# The list is what `import fdn.bench.search, fdn.bench.stage1` loads beyond jax, flax, optax, orbax-checkpoint,
# chex, absl-py, numpy, scipy, pillow, h5py, matplotlib, tqdm, etils and protobuf (present in such images), at
# the versions fdn is tested with. Pure-Python packages published only as source (promise) are built here.
# --no-deps everywhere: nothing the image already has is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
mkdir -p .whl
grep -qxF "/.whl/" .git/info/exclude 2> /dev/null || { mkdir -p .git/info && echo "/.whl/" >> .git/info/exclude; }
binary=(tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 ml_collections==1.1.0 grain==0.2.18
  array_record==0.8.6 immutabledict==4.3.1 toml==0.10.2 portpicker==1.6.0 googleapis-common-protos==1.76.0
  orbax-export==0.0.8 dm-tree==0.1.10 simple-parsing==0.1.9 tensorboardX==2.6.5)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  "${platforms[@]}" -d .whl "${binary[@]}"
python3 -m pip wheel -q --no-deps -w .whl promise==2.3
du -sh .whl
