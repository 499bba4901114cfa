"""The core: the channel graph, costs, selection and surgery; nothing of datasets, files, the
command line or the machine."""
