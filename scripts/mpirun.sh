#!/usr/bin/env bash
# mpirun with what a laptop, a CI container or a root shell needs: oversubscription
# (more ranks than cores) and, when running as root, Open MPI's explicit consent.
# Usage: scripts/mpirun.sh -np 4 ./ringtrain yaml/demo.yaml
set -eu
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec ${MPIRUN:-mpirun} --oversubscribe "$@"
