# CASA site configuration for the reference tests (CASASITECONFIG): offline, no updates, no log files.
# Measures data come from the python-casacore wheel installed beside casatasks in .venv-casa.
import os
from importlib.util import find_spec

measurespath = os.path.join(os.path.dirname(find_spec("casacore").origin), "data")
measures_auto_update = False
data_auto_update = False
skipnetworkcheck = True
logfile = os.devnull
nologger = True
log2term = False
