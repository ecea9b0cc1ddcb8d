#!/usr/bin/env bash
# launch/device-bundle end to end: the bundle unpacks anywhere and runs on a node without Open MPI, HDF5, Boost or
# OpenBLAS installed. As root the script hides this machine's copies of those in a private mount namespace
# (bind mounts over the libraries, Open MPI's plugin and help folders and its launchers), then from the bundle:
# every library resolves, `cgrpo selfcheck` passes as an MPI singleton, an SFT run writes a parallel-HDF5
# checkpoint, and the GPU test binary starts (exit 77 without a device, passing tests with one).
# Skips (77) without nvcc (no CUDA build), or without root / unshare (nothing can be hidden).
set -euo pipefail
root=$1
command -v nvcc >/dev/null || { echo "SKIP: no nvcc, no CUDA build to bundle"; exit 77; }
[[ $(id -u) = 0 ]] && command -v unshare >/dev/null || { echo "SKIP: needs root and unshare"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/launch/device-bundle" "$work/out" | tail -1
tar xJf "$work/out/cgrpo-bundle.tar.xz" -C "$work"
cat >"$work/bare.sh" <<'SIM'
set -euo pipefail
b=$1 cfg=$2 run=$3
hide='mpi|open-pal|open-rte|hdf5|boost|openblas|gfortran|pmix|fabric|libuc[pst]|hwloc|event|oshmem|libsz|aec|quadmath'
empty=$(mktemp -d)
for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/share/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/pmix; do
  [[ -d $d ]] && mount --bind "$empty" "$d"
done
for f in $(ls "$b/lib" | grep -E "$hide"); do
  for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu; do [[ -e $d/$f ]] && mount --bind /dev/null "$d/$f"; done
done
for x in orted orterun mpirun mpiexec; do [[ -e /usr/bin/$x ]] && mount --bind /dev/null "/usr/bin/$x"; done
[[ ! -s /lib/x86_64-linux-gnu/libmpi.so.40 ]] || { echo "FAIL: the system's libmpi is still visible"; exit 1; }
source "$b/env.sh"
for x in "$b"/bin/*; do
  if ldd "$x" | grep "not found"; then echo "FAIL: $(basename "$x") misses libraries"; exit 1; fi
done
"$b/bin/cgrpo" selfcheck | tail -1
"$b/bin/cgrpo" sft --config "$cfg" --run.dir "$run" --sft.steps 2 --run.eval_prompts 0 >"$run.log" 2>&1 ||
  { cat "$run.log"; echo "FAIL: sft from the bundle"; exit 1; }
[[ -f $run/checkpoints/sft_step_00000002.h5 ]] || { echo "FAIL: no checkpoint"; exit 1; }
rc=0
"$b/bin/cgrpo_gpu_tests" >"$run.gpu.log" 2>&1 || rc=$?
[[ $rc = 0 || $rc = 77 ]] || { cat "$run.gpu.log"; echo "FAIL: cgrpo_gpu_tests from the bundle: $rc"; exit 1; }
echo "bundle: selfcheck, SFT with a parallel-HDF5 checkpoint and the GPU test binary (rc $rc) run without the installs"
SIM
unshare -m bash "$work/bare.sh" "$work/cgrpo-bundle" "$root/configs/tiny_cpu.ini" "$work/run"
echo PASS
