"""The machine: files and their atomic writes, output rules and locks, run-folder records,
checkpoints, downloads, devices."""
